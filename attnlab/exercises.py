r"""Checkers for the numeric exercises: each returns a message that says what is right or wrong.

A checker never just says True/False: it prints what it expected, what it got, and a hint. It
returns a :class:`Feedback` (a string that also knows whether the answer passed), so a notebook
can ``print`` it and a test can ``assert feedback.ok``.
"""
from __future__ import annotations

import math

import torch

__all__ = ["Feedback", "check_soft_lookup", "check_nearest_neighbour"]


class Feedback(str):
    """A message for the learner; ``.ok`` tells whether the answer passed."""

    ok: bool

    def __new__(cls, ok: bool, message: str):
        obj = super().__new__(cls, ("Correct! " if ok else "Not yet. ") + message)
        obj.ok = bool(ok)
        return obj

    def __bool__(self) -> bool:
        return self.ok


def _as_tensor(x, name: str) -> torch.Tensor | Feedback:
    try:
        return torch.as_tensor(x, dtype=torch.float64).detach()
    except (TypeError, ValueError, RuntimeError):
        return Feedback(False, f"{name} should be a tensor or a list of numbers, got {type(x).__name__}.")


def check_soft_lookup(weights) -> Feedback:
    r"""Exercise :ref:`ex-soft-lookup-by-hand`: weights of q = (1, 0) against keys (1,0), (0,1), (-1,0), d = 2."""
    w = _as_tensor(weights, "weights")
    if isinstance(w, Feedback):
        return w
    scores = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64) / math.sqrt(2)
    expected = torch.softmax(scores, 0)
    if w.shape != (3,):
        return Feedback(False, f"expected three weights (one per key), got shape {tuple(w.shape)}.")
    if abs(w.sum().item() - 1) > 1e-3:
        return Feedback(False, f"your weights sum to {w.sum().item():.4f}; a softmax's weights sum to 1.")
    unscaled = torch.softmax(scores * math.sqrt(2), 0)
    if torch.allclose(w, unscaled, atol=1e-3):
        return Feedback(False, "these are the weights without the 1/sqrt(d) scale; divide the scores by sqrt(2).")
    if torch.allclose(w, expected, atol=1e-3):
        answer = expected @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        return Feedback(True, f"weights {[round(v, 4) for v in expected.tolist()]}, answer {answer.item():.4f}.")
    return Feedback(False, f"expected {[round(v, 4) for v in expected.tolist()]}, got "
                           f"{[round(v, 4) for v in w.tolist()]}. Scores are q.k_i / sqrt(2) = "
                           "(0.707, 0, -0.707).")


def check_nearest_neighbour(pred, x_query, x_keys, y_values, atol: float = 1e-3) -> Feedback:
    r"""Exercise :ref:`ex-soft-lookup-nearest`: predictions equal the value of the nearest key."""
    p = _as_tensor(pred, "pred")
    if isinstance(p, Feedback):
        return p
    xq, xk, yv = (torch.as_tensor(t, dtype=torch.float64) for t in (x_query, x_keys, y_values))
    if p.shape != xq.shape:
        return Feedback(False, f"expected one prediction per query, shape {tuple(xq.shape)}, got {tuple(p.shape)}.")
    nearest = yv[(xq[:, None] - xk[None, :]).abs().argmin(1)]
    close = (p - nearest).abs() <= atol
    if close.all():
        return Feedback(True, f"all {len(p)} predictions equal the nearest training value: "
                              "a very narrow kernel is hard attention.")
    return Feedback(False, f"{int((~close).sum())} of {len(p)} predictions differ from the nearest "
                           f"training value by more than {atol} (largest gap {(p - nearest).abs().max().item():.3g}). "
                           "Is the width small enough (try 0.001)?")
