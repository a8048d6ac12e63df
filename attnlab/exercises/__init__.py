r"""Checkers for the exercises: each one says what is right or wrong, never just True or False.

A checker returns a :class:`Feedback`, a string that also knows whether the answer passed
(``.ok``) and whether it was tried at all (``.done``), so a notebook can ``print`` it and a test
can ``assert feedback.ok``. There are two kinds:

* **numeric** checkers take a number, a dict of numbers or a formula ``f(...)`` and compare it with
  what the library's own modules give, naming the usual mistakes;
* **build** checkers take the learner's function, run it beside the library's reference (with the
  same weights) on random shapes, masks and edge cases, and report the first case that differs:
  which output, which shape, how far off, and which known mistake it looks like.

An answer still left as ``...``, or a stub that still raises :class:`NotImplementedError`, gets
"Not done yet". Checkers live in one module per chapter (``ch01``, ``ch02``, ...) and are all
importable from here; :data:`REGISTRY` maps each exercise label to its checker. When the grader
runs a notebook (``$ATTNLAB_GRADING``) a checker only records the answer in the grade log, and
the grader checks it itself with :func:`regrade`, in a sandbox (see ``tools/grade.py``).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ._core import REGISTRY, Feedback, check_build, grading_mode, not_done, regrade

__all__ = ["Feedback", "regrade", "check_build", "not_done", "grading_mode"]
for _file in sorted(Path(__file__).parent.glob("ch[0-9][0-9].py")):
    _module = importlib.import_module(f".{_file.stem}", __name__)
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
