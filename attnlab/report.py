r"""Numbers for the prose and learning targets, recorded so that their spread can be shown.

Two calls, used by every chapter:

- :func:`glue` puts a number computed in a cell into the prose (myst-nb's ``glue``; a Markdown cell
  writes ``{glue:text}`name:.3f```), so the text cannot drift from what ran.
- :func:`target` asserts a learning target (``value >= threshold``, or ``<=``) with a message
  that says by how much it passed or failed.

When the environment variable ``ATTNLAB_RECORD`` names a file, both append one JSON line per
call (notebook, name, value, threshold, seed, CPU kernel set, device) to it. ``make robustness``
runs every chapter over seeds and kernel sets this way and tabulates worst, median and best:
:doc:`/book/robustness`.
"""
from __future__ import annotations

import json
import math
import os

__all__ = ["glue", "target"]

_OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t}


def _as_float(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number (or a one-element tensor), got "
                        f"{type(value).__name__}") from None
    return out


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
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        value = value.item() if hasattr(value, "item") else value
        if record and not isinstance(value, bool):
            _record("result", name, float(value))
    myst_glue = _myst_glue()
    if myst_glue is not None:
        myst_glue(name, value, display=False)


def target(name: str, value, threshold: float, op: str = ">=") -> None:
    """Assert the learning target ``value op threshold`` (``op`` is ``">="`` or ``"<="``).

    The value is glued under ``name`` (for the prose) and recorded; the assertion message gives
    the value, the threshold and the margin, so a failure says how far off it was. Like
    :func:`glue`, it returns nothing.
    """
    if op not in _OPS:
        raise ValueError(f"op must be '>=' or '<=', got {op!r}")
    value, threshold = _as_float(value, "value"), _as_float(threshold, "threshold")
    margin = value - threshold if op == ">=" else threshold - value
    _record("target", name, value, threshold=threshold, op=op, margin=margin)
    glue(name, value, record=False)
    if math.isnan(value) or not _OPS[op](value, threshold):
        raise AssertionError(f"learning target {name!r} missed: {value:.4g} {op} {threshold:.4g} "
                             f"does not hold (margin {margin:+.4g})")
