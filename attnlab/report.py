r"""Numbers for the prose and learning targets, recorded so that their spread can be shown.

Two calls, used by every chapter:

- :func:`glue` puts a number computed in a cell into the prose (myst-nb's ``glue``; a Markdown cell
  writes ``{glue:text}`name:.3f```), so the text cannot drift from what ran.
- :func:`target` asserts a learning target (``value >= threshold``, or ``<=``) with a message
  that says by how much it passed or failed; it can carry the ``claim`` it backs and the
  ``baselines`` it must beat (the threshold must lie beyond every one of them).

When the environment variable ``ATTNLAB_RECORD`` names a file, both append one JSON line per
call (notebook, name, value, threshold, seed, CPU kernel set, device) to it. ``make robustness``
runs every chapter over seeds and kernel sets this way and tabulates worst, median and best:
:doc:`/book/robustness`.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re

__all__ = ["glue", "target"]

_OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t}


def _as_float(value, name: str) -> float:
    """``value`` as a float: a real number, or a tensor or array holding exactly one."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)) or (
            not isinstance(value, numbers.Real) and not hasattr(value, "item")):
        raise TypeError(f"{name} must be a number (or a one-element tensor), got "
                        f"{type(value).__name__} {value!r:.40}")
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    size = size() if callable(size) else size
    if size is not None and size != 1:
        raise ValueError(f"{name} must hold one number, got {size} (shape "
                         f"{tuple(getattr(value, 'shape', ()))})")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r:.40}") from None


def _check_name(name) -> str:
    """A glue name the prose can quote: ``{glue:text}`name:.3f``` (letters, digits, ``_``)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be letters, digits and '_' (not starting with a digit), "
                         f"so that the prose can quote it, got {name!r}")
    return name


def _record(kind: str, name: str, value: float, **extra) -> None:
    path = os.environ.get("ATTNLAB_RECORD")
    if not path:
        return
    row = {"kind": kind, "notebook": os.environ.get("ATTNLAB_NOTEBOOK", ""), "name": name,
           "value": value, "seed": os.environ.get("ATTNLAB_SEED", "0"),
           "kernels": os.environ.get("ATEN_CPU_CAPABILITY", "native"),
           "device": os.environ.get("ATTNLAB_DEVICE", "auto"), **extra}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _myst_glue():
    """myst-nb's ``glue`` when this runs in a kernel that has it (the book build), else None.

    A reader's Jupyter or Colab has no myst-nb (it brings Sphinx), and nothing there shows a
    glued value anyway (``display=False``), so without it :func:`glue` only records.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    if get_ipython() is None:
        return None
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return None
    return myst_glue


def glue(name: str, value, *, record: bool = True) -> None:
    """Make ``value`` available to the page's prose (``{glue:text}`name```).

    Numbers are recorded for the robustness table unless ``record=False`` (e.g. a constant).
    Outside the book build (a script, or a reader's Jupyter or Colab without myst-nb) nothing
    else happens, and the reader sees the same page either way. Nothing is returned, so a cell
    that ends with a ``glue`` shows no stray value in the page.
    """
    _check_name(name)
    if not isinstance(record, bool):
        raise TypeError(f"record must be True or False, got {record!r}")
    if hasattr(value, "item") and hasattr(value, "shape"):  # a tensor or array: one number
        _as_float(value, "value")
        value = value.item()
    if isinstance(value, numbers.Real) and record and not isinstance(value, bool):
        _record("result", name, float(value))
    myst_glue = _myst_glue()
    if myst_glue is not None:
        myst_glue(name, value, display=False)


def target(name: str, value, threshold: float, op: str = ">=", *, claim: str | None = None,
           baselines: dict | None = None) -> None:
    """Assert the learning target ``value op threshold`` (``op`` is ``">="`` or ``"<="``).

    The value is glued under ``name`` (for the prose) and recorded; the assertion message gives
    the value, the threshold and the margin, so a failure says how far off it was. Like
    :func:`glue`, it returns nothing.

    Args:
        claim: the sentence of the chapter that the target backs, in a few words; the
            robustness page shows it beside the numbers.
        baselines: the same quantity without the mechanism: model-free baselines (majority
            class, uniform weights, all ink, the value at initialisation, ...) and competitors,
            by name. The threshold must lie beyond every one of them in the direction of ``op``
            (a target that a baseline would pass tests nothing: ``ValueError``). The record
            gains the best baseline and the value's margin over it.
    """
    _check_name(name)
    if op not in _OPS:
        raise ValueError(f"op must be '>=' or '<=', got {op!r}")
    value, threshold = _as_float(value, "value"), _as_float(threshold, "threshold")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    margin = value - threshold if op == ">=" else threshold - value
    extra = {}
    if claim is not None:
        if not isinstance(claim, str) or not claim.strip():
            raise TypeError("claim must be a non-empty sentence")
        extra["claim"] = claim.strip()
    if baselines:
        values = {str(k): _as_float(v, f"baseline {k!r}") for k, v in baselines.items()}
        pick = max if op == ">=" else min
        best_name = pick(values, key=values.get)
        best = values[best_name]
        passing = [k for k, v in values.items() if not math.isnan(v) and _OPS[op](v, threshold)]
        if passing:
            raise ValueError(f"target {name!r}: the threshold {op} {threshold:.4g} is met by the "
                             f"baseline(s) {', '.join(passing)}; a target must lie beyond them")
        extra.update(baselines=values, best_baseline=best_name, best_baseline_value=best,
                     margin_over_baseline=value - best if op == ">=" else best - value)
    _record("target", name, value, threshold=threshold, op=op, margin=margin, **extra)
    glue(name, value, record=False)
    if math.isnan(value) or not _OPS[op](value, threshold):
        raise AssertionError(f"learning target {name!r} missed: {value:.4g} {op} {threshold:.4g} "
                             f"does not hold (margin {margin:+.4g})")
