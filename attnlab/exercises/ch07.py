"""Checkers for Chapter 7, the cost of attention."""
from __future__ import annotations

import math

import torch

from ._core import (Feedback, as_number, check_build, checker, diagnose, fmt, formula_values,
                    fresh_points, generator)

__all__ = ['check_video_axial_cost', 'check_cost_memory', 'check_row_attention']


_VIDEO_SIZES = ((8, 16, 16), (4, 28, 28), (16, 32, 8), (1, 5, 7), (3, 3, 3))


@checker("ex-cost-video")
def check_video_axial_cost(scores=None, exponent=None) -> Feedback:
    r"""Exercise :ref:`ex-cost-video`: scores per head of axial attention over video, and growth.

    Args:
        scores: your count as a callable ``f(F, H, W)`` (checked on a few sizes). One head attends
            along time, then rows, then columns: each of the FHW positions scores the F positions
            of its time line, the H of its column and the W of its row, FHW(F + H + W) in all
            (the image case is :func:`attnlab.axial.attention_cost` ``(H, W, "axial")`` =
            HW(H + W)).
        exponent: the exponent ``p`` in scores ~ n^p for n = FHW and F = H = W (answer: 4/3).

    Give one or both; the answer passes when every part given is right.
    """
    if scores is None and exponent is None:
        return Feedback(False, "give scores=f(F, H, W) (a function), exponent=p (a number), "
                               "or both.")
    lines = []
    if scores is not None:
        if not callable(scores):
            return Feedback(False, "scores should be a function f(F, H, W) that returns a "
                                   f"count, got {type(scores).__name__}.")
        sizes = fresh_points(_VIDEO_SIZES, lambda r: tuple(r.randint(1, 40) for _ in range(3)))
        values = formula_values(scores, sizes, ("F", "H", "W"))
        if isinstance(values, Feedback):
            return values
        for F_, H_, W_ in sizes:
            v = values[(F_, H_, W_)]
            n = F_ * H_ * W_
            expected = n * (F_ + H_ + W_)
            hint = diagnose(v, expected, [
                (n * n, "that is full attention over all FHW positions; axial attention scores "
                        "each position only against its own time line, row and column."),
                (n * (H_ + W_), "the time step is missing: along time each position also scores "
                                "F frames."),
                (n * (F_ + H_ + W_ - 3), "each step also scores a position against itself (the "
                                         "softmax runs over the whole line, the position "
                                         "included)."),
                (F_ + H_ + W_, "that is per position; one head does this for every one of the "
                               "FHW positions."),
            ])
            if hint is not None:
                return Feedback(False, f"for F={F_}, H={H_}, W={W_}: expected {expected:,} "
                                       f"scores, got {fmt(v)}. "
                                       + (hint or "Count, for each of the FHW positions, the "
                                                  "keys of its three axis steps."))
        lines.append("scores: FHW(F + H + W) is right.")
    if exponent is not None:
        p = as_number(exponent, "exponent")
        if isinstance(p, Feedback):
            return p
        if not math.isclose(p, 4 / 3, abs_tol=0.01):
            hints = {2.0: "2 is full attention; axial attention scores n * 3 n^(1/3).",
                     1.5: "3/2 is the image case (each line has n^(1/2) pixels); a video line "
                          "has n^(1/3).",
                     1.0: "the scores grow faster than n: each position scores 3 n^(1/3) keys.",
                     1 / 3: "n^(1/3) is the length of one line; multiply by the n positions."}
            hint = next((h for v, h in hints.items() if math.isclose(p, v, abs_tol=0.01)),
                        "with s = F = H = W, n = s^3 and the count is n * 3s; write s as a power "
                        "of n and collect the exponents.")
            return Feedback(False, f"exponent: expected 4/3 = 1.333, got {p:.4g}. {hint}")
        lines.append("exponent: 4/3 is right (3 n^(4/3) scores, against n^2 for full attention).")
    return Feedback(True, " ".join(lines))


# --- Understand: what the explicit path keeps ---------------------------------------------------

def _saved_bytes(T: int, heads: int = 4, width: int = 32) -> int:
    """Bytes autograd saves in the explicit path of attnlab's attention (inputs left out)."""
    from attnlab.functional import scaled_dot_product_attention

    q, k, v = (torch.randn(1, heads, T, width).requires_grad_(True) for _ in range(3))
    skip = {t.untyped_storage().data_ptr() for t in (q, k, v)}
    seen = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        scaled_dot_product_attention(q, k, v, return_attention=True)
    return sum(seen.values())


@checker("ex-cost-memory")
def check_cost_memory(per_head, predicted) -> Feedback:
    r"""Exercise :ref:`ex-cost-memory`: T x T matrices kept per head, and the bytes at scale.

    ``per_head`` is the number of float32 ``T x T`` matrices the explicit path of
    :func:`attnlab.functional.scaled_dot_product_attention` keeps for the backward pass, per
    head (measured here as in the chapter, at T = 1024 with 4 heads of width 32: saved bytes
    over ``4 * 4 * T^2``); ``predicted`` is the memory in bytes for 8 sequences, 8 heads,
    T = 4096: ``per_head * 4 * 8 * 8 * 4096^2``, within 10%.
    """
    got = as_number(per_head, "per_head")
    if isinstance(got, Feedback):
        return got
    pred = as_number(predicted, "predicted")
    if isinstance(pred, Feedback):
        return pred
    T = 1024
    expected = _saved_bytes(T) / (4 * 4 * T * T)
    if not math.isclose(got, expected, rel_tol=0.05):
        hint = next((h for v, h in (
            (4 * expected, "Divide the saved bytes by 4 bytes per float *and* by the 4 heads."),
            (16 * expected, "Divide by 4 * 4 * T^2: 4 bytes per float, 4 heads."),
            (expected / 4, "Divide by 4 * 4 * T^2 once: 4 heads, 4 bytes per float.")
        ) if math.isclose(got, v, rel_tol=0.05)),
                    "Divide the explicit path's saved bytes at T = 1024 by 4 * 4 * T^2 "
                    "(4 heads, 4 bytes per float).")
        return Feedback(False, f"per_head: expected about {expected:.3g}, got {got:.4g}. {hint}")
    bytes_ = expected * 4 * 8 * 8 * 4096 ** 2
    if not math.isclose(pred, bytes_, rel_tol=0.1):
        hint = next((h for v, h in (
            (bytes_ / 2 ** 30, "That looks like GiB: give bytes."),
            (bytes_ / 4, "That counts entries: each float32 entry is 4 bytes."),
            (bytes_ / 8, "Count every one of the 8 sequences and 8 heads: B * h matrices."),
            (bytes_ / 64, "Count every one of the 8 sequences and 8 heads: B * h matrices."),
            (bytes_ / 16, "T = 4096 is 4 times 1024, so each T x T matrix is 16 times larger.")
        ) if math.isclose(pred, v, rel_tol=0.1)),
                    "Multiply: matrices per head * 4 bytes * B * h * T^2.")
        return Feedback(False, f"predicted: expected about {bytes_:.4g} bytes, got {pred:.4g}. "
                               + hint)
    what = (" (the softmax weights, which the backward passes of the softmax and of A V both "
            "read)" if round(expected) == 1 else "")
    noun = "matrix" if round(expected) == 1 else "matrices"
    return Feedback(True, f"{expected:.3g} T x T {noun} per head{what}; for 8 sequences, 8 "
                          f"heads and T = 4096 that is {bytes_ / 2 ** 30:.3g} GiB saved for the "
                          "backward pass. A fused kernel keeps none of it.")


# --- Build: row attention ----------------------------------------------------------------------

def _rows(x, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, num_heads, *, axis="row", heads_last=False,
          scale="head", out=True):
    """Multi-head attention along rows from tensors, and the variants of the usual mistakes."""
    B, C, H, W = x.shape
    d = C // num_heads
    t = x.permute(0, 2, 3, 1) if axis == "row" else x.permute(0, 3, 2, 1)  # (B, P, L, C)
    if axis == "full":
        t = x.permute(0, 2, 3, 1).reshape(B, 1, H * W, C)
    P, L = t.shape[1:3]

    def split(u):
        if heads_last:                                      # channel c -> head c % h (wrong)
            return u.view(B, P, L, d, num_heads).permute(0, 4, 1, 2, 3)
        return u.view(B, P, L, num_heads, d).permute(0, 3, 1, 2, 4)   # (B, h, P, L, d)

    q, k, v = (split(t @ w.T + b) for w, b in ((w_q, b_q), (w_k, b_k), (w_v, b_v)))
    s = q @ k.transpose(-2, -1) / {"head": math.sqrt(d), "C": math.sqrt(C), None: 1.0}[scale]
    o = torch.softmax(s, -1) @ v                                       # (B, h, P, L, d)
    o = (o.permute(0, 2, 3, 4, 1) if heads_last else o.permute(0, 2, 3, 1, 4)).reshape(B, P, L, C)
    o = o @ w_o.T + b_o if out else o
    if axis == "column":
        return o.permute(0, 3, 2, 1)
    return o.reshape(B, H, W, C).permute(0, 3, 1, 2)


def _row_cases():
    """Several H, W, heads; batch 1; one row; rows of one pixel; large scores."""
    from attnlab.axial import RowAttention

    g = generator(0)
    for B, C, H, W, h, scale in ((2, 8, 5, 7, 2, 1.0), (1, 12, 4, 4, 3, 1.0),
                                 (1, 6, 3, 9, 1, 1.0), (2, 16, 6, 5, 4, 1.0),
                                 (1, 4, 1, 6, 2, 1.0), (1, 4, 5, 1, 2, 1.0),
                                 (2, 8, 4, 6, 2, 30.0)):
        layer = RowAttention(C, h).double()
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
        x = scale * torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
        with torch.no_grad():
            expected = layer(x)
        weights = [t.detach().clone() for proj in (layer.q_proj, layer.k_proj, layer.v_proj,
                                                    layer.out_proj)
                   for t in (proj.weight, proj.bias)]
        case = (f"x {tuple(x.shape)}, {h} head{'s' if h > 1 else ''}"
                + (f", entries of std {scale:g}" if scale != 1 else ""))
        yield case, (x, *weights, h), expected


@checker("ex-cost-build")
def check_row_attention(fn) -> Feedback:
    r"""Exercise :ref:`ex-cost-build`: multi-head attention within each row, from tensors.

    ``fn(x, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, num_heads)`` gets ``x (B, C, H, W)``, the four
    projections as ``nn.Linear`` weights ``(C, C)`` and biases ``(C,)`` (acting on the channels
    of each pixel) and the number of heads, and returns ``(B, C, H, W)``. It is held against
    :class:`attnlab.axial.RowAttention` with the same weights on several H, W and head counts,
    batch 1, a single row, rows of one pixel and large scores.
    """
    mistakes = [
        (lambda *a: _rows(*a, axis="column"),
         "You attended along the columns: each pixel attends to the W pixels of its own row, one "
         "sequence of length W per row."),
        (lambda *a: _rows(*a, axis="full"),
         "That is full attention over all H*W pixels; in row attention a pixel sees only the "
         "pixels of its own row."),
        (lambda *a: _rows(*a, heads_last=True),
         "The heads are split the wrong way: channel c belongs to head c // d, d = C / num_heads "
         "(view the channels as (num_heads, d), not (d, num_heads))."),
        (lambda *a: _rows(*a, scale=None),
         "The scores are not scaled: divide q k^T by sqrt(d), d = C / num_heads."),
        (lambda *a: _rows(*a, scale="C"),
         "The scale uses C: divide by the square root of the head width d = C / num_heads."),
        (lambda *a: _rows(*a, out=False),
         "The output projection is missing: concatenate the heads, then apply w_o and b_o."),
    ]
    return check_build(fn, _row_cases(), what="attnlab.axial.RowAttention", atol=1e-6,
                       mistakes=mistakes,
                       done="Each row is a sequence of W pixels with its own softmax; the "
                            "column step is the same with H and W swapped.")
