"""Checkers for Chapter 16, positions and length (RoPE, ALiBi)."""
from __future__ import annotations

import math

import torch

from ._core import (Feedback, as_number, check_build, checker, diagnose, fmt, formula_values,
                    fresh_points, generator)

__all__ = ["check_ntk_base", "check_rope", "check_alibi_slopes"]


# --- Derive: the NTK-aware base ------------------------------------------------------------------

@checker("ex-pos-ntk")
def check_ntk_base(answer) -> Feedback:
    r"""Exercise :ref:`ex-pos-ntk`: the base :math:`b'` that divides RoPE's lowest frequency
    :math:`\theta_{d/2-1} = b^{-(d-2)/d}` by the factor f and leaves the highest, 1, as it is.

    ``answer`` is a number (for b = 10000, f = 4, d = 64; to 4 digits) or a function
    ``ntk_base(b, f, d)``, checked
    at several points against :func:`attnlab.positions.ntk_scaled_base`: :math:`b f^{d/(d-2)}`.
    """
    from attnlab.positions import ntk_scaled_base

    points = [(10000.0, 4.0, 64)] if not callable(answer) else fresh_points(
        [(10000.0, 4.0, 64), (10000.0, 2.0, 16), (500000.0, 8.0, 128), (100.0, 3.0, 8)],
        lambda r: (float(r.choice((100, 10000, 500000))), float(r.randint(2, 16)),
                   2 * r.randint(2, 64)))
    if callable(answer):
        got = formula_values(answer, points, ("b", "f", "d"))
        if isinstance(got, Feedback):
            return got
    else:
        got = as_number(answer, "the base")
        if isinstance(got, Feedback):
            return got
        got = {points[0]: got}
    for (b, f, d), value in got.items():
        expected = ntk_scaled_base(b, f, d)
        hint = diagnose(value, expected, [
            (b * f, "b f stretches the lowest frequency by f^((d-2)/d), a little less than f; "
                    "solve b'^(-(d-2)/d) = b^(-(d-2)/d) / f for b'."),
            (b * f ** ((d - 2) / d), "the exponent is upside down: raise both sides of "
                                     "b'^(-(d-2)/d) = b^(-(d-2)/d) / f to the power -d/(d-2)."),
            (b / f, "a smaller base turns every pair faster; the lowest frequency must turn "
                    "f times slower."),
            (b * f ** 2, "the exponent is d/(d-2), close to 1 for a wide head, not 2."),
        ], rel=1e-6 if callable(answer) else 1e-4)   # a number may be rounded to an integer
        if hint is not None:
            return Feedback(False, f"for b = {b:g}, f = {f:g}, d = {d}: expected "
                                   f"{fmt(expected)}, got {fmt(value)}. "
                            + (hint or "Pair i turns at b^(-2i/d); the lowest frequency is "
                                       "the last pair, i = d/2 - 1. The highest, i = 0, is 1 "
                                       "whatever the base."))
    return Feedback(True, "b' = b f^(d/(d-2)): for b = 10000, f = 4, d = 64 that is "
                          f"{ntk_scaled_base(10000.0, 4.0, 64):,.0f}. The fastest pair keeps its "
                          "frequency, so the short offsets the model learned keep their angles.")


# --- Build: RoPE with the "rotate half" pairing ------------------------------------------------

def _rope_ref(x, positions, base, *, halves=True, sign=1.0, exponent=2.0, pos=True):
    """RoPE (halves pairing by default); the keywords switch on one typical mistake each."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) * (exponent / 2) / d)
    p = positions.to(torch.float64) if pos else torch.ones_like(positions, dtype=torch.float64)
    ang = p[:, None] * theta
    cos, sin = ang.cos().to(x.dtype), sign * ang.sin().to(x.dtype)
    if halves:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


@checker("ex-pos-rope-build")
def check_rope(fn) -> Feedback:
    r"""Exercise :ref:`ex-pos-rope-build`: rotary embeddings with the "rotate half" pairing.

    ``fn(x, positions, base)`` gets ``x`` ``(..., L, d)`` (d even), ``positions`` ``(L,)`` and
    the base b, and rotates each pair :math:`(x_i, x_{i+d/2})` of row l by the angle
    :math:`p_l\,b^{-2i/d}`. Held against ``attnlab.positions.apply_rope(...,
    interleaved=False)`` in float64 (float32 angles pass), with batch and head dimensions,
    positions that do not start at 0, one row and d = 2.
    """
    from attnlab.positions import apply_rope

    def cases():
        g = generator(0)
        for shape, start, base in (((5, 8), 0, 10000.0), ((2, 3, 7, 16), 11, 10000.0),
                                   ((1, 1, 2), 3, 100.0), ((4, 1, 6), 0, 500000.0),
                                   ((2, 9, 4), 40, 10.0)):
            x = torch.randn(shape, generator=g, dtype=torch.float64)
            positions = torch.arange(start, start + shape[-2])
            yield (f"x {shape}, positions {start}..{start + shape[-2] - 1}, base {base:g}",
                   (x, positions, base), apply_rope(x, positions, base=base, interleaved=False))

    mistakes = [
        (lambda x, p, b: _rope_ref(x, p, b, halves=False), "That is the paper's pairing of "
         "neighbours (x_{2i}, x_{2i+1}); rotate half pairs x_i with x_{i+d/2}."),
        (lambda x, p, b: _rope_ref(x, p, b, sign=-1.0), "The rotation turns the wrong way: the "
         "first half becomes x1 cos - x2 sin, the second half x1 sin + x2 cos."),
        (lambda x, p, b: _rope_ref(x, p, b, exponent=1.0), "The frequency of pair i is "
         "b^(-2i/d), with i counting pairs; b^(-i/d) turns the slow pairs too fast."),
        (lambda x, p, b: _rope_ref(x, p, b, pos=False), "The angle is the position times the "
         "frequency: every row is rotated by its own position."),
        (lambda x, p, b: x, "The output equals the input: nothing was rotated."),
    ]
    return check_build(fn, cases(), what="attnlab.positions.apply_rope(interleaved=False)",
                       atol=1e-5, mistakes=mistakes, names=("rotated x",),
                       done="The same function as the paper's pairing, up to a fixed "
                            "permutation of the features (attnlab.positions.pairing_permutation).")


# --- Build: ALiBi's slopes -----------------------------------------------------------------------

def _slopes_naive(h):
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / h) for i in range(h)], dtype=torch.float64)


@checker("ex-pos-alibi-build")
def check_alibi_slopes(fn) -> Feedback:
    r"""Exercise :ref:`ex-pos-alibi-build`: ALiBi's head slopes for any number of heads.

    ``fn(h)`` returns ``(h,)`` slopes: :math:`2^{-8i/h}`, i = 1..h, when h is a power of two;
    otherwise the slopes of the power of two below h followed by every other slope of the
    power of two above it. Held against :func:`attnlab.positions.alibi_slopes`.
    """
    from attnlab.positions import alibi_slopes

    def cases():
        for h in (1, 2, 8, 16, 6, 12, 5, 20):
            yield f"h = {h}", (h,), alibi_slopes(h)

    def as_float64(fn):
        def call(h):
            out = fn(h)
            return torch.as_tensor(out, dtype=torch.float64)
        return call

    mistakes = [
        (_slopes_naive, "2^(-8i/h) is the rule for a power of two only; for other h the paper "
         "takes the power of two below h, then every other slope of the one above."),
        (lambda h: torch.tensor([2.0 ** (-8.0 * i / h) for i in range(h)], dtype=torch.float64),
         "The slopes start at i = 1: the first head's slope is 2^(-8/h), not 1."),
    ]
    return check_build(as_float64(fn), cases(), what="attnlab.positions.alibi_slopes",
                       atol=1e-7, mistakes=mistakes, names=("slopes",),
                       done="A geometric sequence from 2^(-8/h): each head looks back over a "
                            "different range, the steepest at the last few tokens.")
