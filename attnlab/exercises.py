r"""Checkers for the numeric exercises: each returns a message that says what is right or wrong.

A checker never just says True/False: it prints what it expected, what it got, and a hint. It
returns a :class:`Feedback` (a string that also knows whether the answer passed), so a notebook
can ``print`` it and a test can ``assert feedback.ok``.

When the environment variable ``ATTNLAB_GRADE_LOG`` names a file (the grader,
``tools/grade.py``, sets it), every checker also appends one JSON line to it: the checker's name,
whether the answer passed, and the message.
"""
from __future__ import annotations

import functools
import json
import math
import numbers
import os
from collections.abc import Mapping

import torch

__all__ = ["Feedback", "check_soft_lookup", "check_nearest_neighbour", "check_attention_scale",
           "check_se_count", "check_spatial_cost", "check_non_local_cost", "check_video_axial_cost",
           "check_cross_attention", "check_online_softmax_merge"]


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


# --- helpers for the numeric checkers --------------------------------------------------------

def _as_number(x, name: str) -> float | Feedback:
    """``x`` as a float (int, float, Fraction, numpy or one-element tensor), else a Feedback."""
    if isinstance(x, bool) or isinstance(x, (str, bytes)):
        return Feedback(False, f"{name} should be a number, got {type(x).__name__} {x!r}.")
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            return Feedback(False, f"{name} should be a single number, got a tensor of shape {tuple(x.shape)}.")
        return float(x.item())
    if isinstance(x, numbers.Real):
        return float(x)
    try:                                                    # numpy scalars and 0-d arrays
        if getattr(x, "shape", None) == () or getattr(x, "size", None) == 1:
            return float(x)
    except (TypeError, ValueError):
        pass
    return Feedback(False, f"{name} should be a number, got {type(x).__name__}.")


def _as_counts(x, name: str, keys, key_name: str) -> dict | Feedback:
    """A dict ``{key: count}`` covering ``keys``, with number values; else a Feedback."""
    if not isinstance(x, Mapping):
        return Feedback(False, f"{name} should be a dict {{{key_name}: count}}, got {type(x).__name__}.")
    missing = [k for k in keys if k not in x]
    if missing:
        return Feedback(False, f"{name} needs a count for {key_name} = {', '.join(map(str, missing))} "
                               f"(got keys {sorted(x, key=str)}).")
    out = {}
    for k in keys:
        v = _as_number(x[k], f"{name}[{k}]")
        if isinstance(v, Feedback):
            return v
        out[k] = v
    return out


def _diagnose(got: float, expected: float, wrong: list[tuple[float, str]], rel: float = 1e-9) -> str | None:
    """``None`` when ``got`` matches ``expected``; else the hint of a known mistake (or "")."""
    def same(a, b):
        return math.isclose(a, b, rel_tol=rel, abs_tol=rel)
    if same(got, expected):
        return None
    for value, hint in wrong:
        if same(got, value):
            return hint[:1].upper() + hint[1:]
    return ""


def _fmt(v: float) -> str:
    return f"{int(round(v)):,}" if float(v).is_integer() else f"{v:.4g}"


# --- chap-self-attention --------------------------------------------------------------------------

def check_attention_scale(factor, *, d_k: int = 256, std: float = 2.0, rtol: float = 0.05) -> Feedback:
    r"""Exercise :ref:`ex-self-attention-scale`: the factor that brings the score spread back to 1.

    With query and key entries of standard deviation ``std``, each product :math:`q_i k_i` has
    variance :math:`\mathrm{std}^4`, so :math:`q\cdot k` has standard deviation
    :math:`\mathrm{std}^2\sqrt{d_k}`; the factor is :math:`1/(\mathrm{std}^2\sqrt{d_k})`
    (``1/64`` at the defaults). A measured factor within ``rtol`` of it passes.
    """
    f = _as_number(factor, "factor")
    if isinstance(f, Feedback):
        return f
    expected = 1 / (std**2 * math.sqrt(d_k))
    if math.isclose(f, expected, rel_tol=rtol):
        return Feedback(True, f"the factor is 1/({std:g}^2 * sqrt({d_k})) = {expected:.6g} "
                              f"(you gave {f:.6g}): scaled scores have standard deviation 1 again.")
    root = math.sqrt(d_k)
    wrong = [(1 / root, f"1/sqrt(d_k) = {1 / root:.6g} is the right factor for entries of std 1, but "
                        f"now each product q_i k_i has variance {std:g}^2 * {std:g}^2 = {std**4:g}: "
                        f"the score's std grows by {std**2:g}, so divide by that too."),
             (1 / (std * root), f"1/({std:g} sqrt(d_k)) corrects for the std of q *or* of k, but both have "
                                f"std {std:g}: the product's std is {std:g} * {std:g} = {std**2:g} times larger."),
             (1 / d_k, "1/d_k over-corrects: the score is a sum of d_k terms, so its std grows like "
                       "sqrt(d_k), not d_k."),
             (1 / (std**2 * d_k), "divide by sqrt(d_k), not d_k: the score's std grows like sqrt(d_k).")]
    for value, hint in wrong:
        if math.isclose(f, value, rel_tol=rtol):
            return Feedback(False, f"expected {expected:.6g}, got {f:.6g}. {hint}")
    if f > 1 and math.isclose(1 / f, expected, rel_tol=rtol):
        return Feedback(False, f"expected {expected:.6g}, got {f:.6g}: that is the divisor. The factor "
                               f"multiplies the scores, so give 1/{f:g}.")
    return Feedback(False, f"expected {expected:.6g}, got {f:.6g}. Measure the std of q.k for random "
                           f"q, k with entries of std {std:g} at d_k = {d_k}: the factor is one over it.")


# --- chap-channel-attention -----------------------------------------------------------------------

_SE_REDUCTIONS = (4, 8, 16, 32)


def _se_params(channels: int, reduction: int) -> int:
    from attnlab.channel import SqueezeExcite
    from attnlab.utils import count_parameters
    return count_parameters(SqueezeExcite(channels, reduction))


def check_se_count(answer, channels: int = 256) -> Feedback:
    r"""Exercise :ref:`ex-channel-se-count`: the parameter count of an SE block.

    ``answer`` is either your formula as a callable ``f(C, r)`` (checked for C in 64, 256, 512 and
    r in 4, 8, 16, 32) or a dict ``{r: count}`` for ``C = channels`` (default 256) and r in 4, 8,
    16, 32. Expected values come from :func:`attnlab.utils.count_parameters` on
    :class:`attnlab.channel.SqueezeExcite`, never from a typed-in table.
    """
    if callable(answer):
        cases = [(c, r) for c in (64, 256, 512) for r in _SE_REDUCTIONS]
        got = {}
        for c, r in cases:
            try:
                v = answer(c, r)
            except Exception as e:  # noqa: BLE001 - the learner's code; report, do not crash
                return Feedback(False, f"your formula raised {type(e).__name__}: {e} for C={c}, r={r}. "
                                       "It should take (C, r) and return a number.")
            v = _as_number(v, f"f({c}, {r})")
            if isinstance(v, Feedback):
                return v
            got[(c, r)] = v
    elif isinstance(answer, Mapping):
        counts = _as_counts(answer, "answer", _SE_REDUCTIONS, "r")
        if isinstance(counts, Feedback):
            return counts
        cases = [(channels, r) for r in _SE_REDUCTIONS]
        got = {(channels, r): counts[r] for r in _SE_REDUCTIONS}
    else:
        return Feedback(False, "answer should be a formula f(C, r) (a function) or a dict {r: count} "
                               f"for C = {channels}, got {type(answer).__name__}.")
    for c, r in cases:
        expected = _se_params(c, r)
        h = c // r
        hint = _diagnose(got[(c, r)], expected, [
            (2 * c * h, "you counted the weights only: each of the two 1x1 convolutions also has a bias "
                        "(C/r for the first, C for the second)."),
            (2 * c * h + c, "the first layer's C/r biases are missing."),
            (2 * c * h + h, "the second layer's C biases are missing."),
            (c * h + h, "that is only the squeeze layer W1, b1; the excitation layer W2, b2 maps C/r "
                        "back to C."),
            (c * c + c, "there is a bottleneck: the hidden width is C/r, not C."),
            (2 * c * c // r**2 + c // r + c, "the weight matrices are C x C/r: C*C/r each, not (C/r)^2 * C."),
        ])
        if hint is not None:
            return Feedback(False, f"for C = {c}, r = {r}: expected {expected:,} parameters, got "
                                   f"{_fmt(got[(c, r)])}. " + (hint or "Count W1 (C/r x C), b1 (C/r), W2 "
                                                                 "(C x C/r) and b2 (C)."))
    total = sum(n * _se_params(c, 16) for c, n in [(256, 3), (512, 4), (1024, 6), (2048, 3)])
    return Feedback(True, f"2C^2/r + C/r + C matches SqueezeExcite for all {len(cases)} cases "
                          f"(C = 256, r = 16: {_se_params(256, 16):,}). Over ResNet-50's 16 bottleneck "
                          f"blocks at r = 16 that is {total:,} extra parameters.")


# --- chap-spatial-attention -----------------------------------------------------------------------

def check_spatial_cost(spatial_gate=None, coordinate=None, se=None) -> Feedback:
    r"""Exercise :ref:`ex-spatial-cost`: parameters of CBAM's spatial gate, coordinate attention and SE.

    Args:
        spatial_gate: dict ``{k: count}`` for ``SpatialGate(k)``, k in 3, 5, 7.
        coordinate: dict ``{C: count}`` for ``CoordinateAttention(C)`` (defaults), C in 64, 512.
        se: dict ``{C: count}`` for ``SqueezeExcite(C)`` (r = 16), C in 64, 512.

    Each part is checked against :func:`attnlab.utils.count_parameters` on the real module; the
    answer passes when all three parts are given and right.
    """
    from attnlab.channel import SqueezeExcite
    from attnlab.spatial import CoordinateAttention, SpatialGate
    from attnlab.utils import count_parameters

    if spatial_gate is None and coordinate is None and se is None:
        return Feedback(False, "give at least one of spatial_gate={k: count}, coordinate={C: count}, "
                               "se={C: count}.")
    lines, ok = [], True

    def part(answer, name, keys, key_name, make, wrongs):
        nonlocal ok
        if answer is None:
            ok = False
            lines.append(f"{name}: not given.")
            return True
        counts = _as_counts(answer, name, keys, key_name)
        if isinstance(counts, Feedback):
            ok = False
            lines.append(str(counts).removeprefix("Not yet. "))
            return False
        for key in keys:
            expected = count_parameters(make(key))
            hint = _diagnose(counts[key], expected, wrongs(key))
            if hint is not None:
                ok = False
                lines.append(f"{name}, {key_name} = {key}: expected {expected:,}, got {_fmt(counts[key])}. "
                             + (hint or "Count every weight and bias with count_parameters."))
                return True
        lines.append(f"{name}: right ({', '.join(f'{key_name}={k}: {count_parameters(make(k)):,}' for k in keys)}).")
        return True

    part(spatial_gate, "spatial_gate", (3, 5, 7), "k", SpatialGate, lambda k: [
        (2 * k * k, "the convolution has one bias too: 2k^2 + 1."),
        (k * k + 1, "the convolution reads two maps (channel average and channel maximum): 2 k^2 weights."),
        (k * k, "the convolution reads two maps (average and maximum) and has a bias: 2 k^2 + 1."),
    ])

    def ca_wrongs(c):
        h = max(8, c // 32)
        return [(c * h + h + 2 * (h * c + c), "coordinate attention's default has a batch norm after "
                                             "the shared convolution: 2 more parameters per hidden channel."),
                (c * (c // 32) + 3 * (c // 32) + 2 * (c * (c // 32) + c),
                 "the hidden width is max(8, C // 32), never below 8."),
                (c * h + 3 * h + h * c + c, "there are two output convolutions, F_h and F_w, not one."),
                (3 * c * h, "you counted the weights only: each 1x1 convolution has a bias, and the batch "
                            "norm has 2 per hidden channel.")]
    part(coordinate, "coordinate", (64, 512), "C", CoordinateAttention, ca_wrongs)

    def se_wrongs(c):
        h = c // 16
        return [(2 * c * h, "you counted the weights only: add the biases C/16 and C."),
                (2 * c * (c // 32) + c // 32 + c, "SqueezeExcite's default is r = 16 (32 is coordinate "
                                                  "attention's reduction).")]
    part(se, "se", (64, 512), "C", SqueezeExcite, se_wrongs)
    if ok:
        lines.append("The spatial gate's 2k^2 + 1 does not depend on C; SE grows like 2C^2/16 and "
                     "coordinate attention like 3C * max(8, C/32).")
    return Feedback(ok, " ".join(lines))


# --- chap-non-local -------------------------------------------------------------------------------

def _non_local_entries(frames: int, height: int, width: int, sub_sample: bool) -> tuple[int, int]:
    """``(N, M)`` of ``NonLocalBlock(dimension=3)``: M counted by running the block's own pooling."""
    from attnlab.non_local import NonLocalBlock
    block = NonLocalBlock(4, dimension=3, sub_sample=sub_sample)
    n = frames * height * width
    with torch.no_grad():
        m = block.pool(torch.zeros(1, 1, frames, height, width)).numel()
        # a tiny forward confirms that the affinity really is (B, N, M) with this pooling
        small = (2, 6, 6)
        _, a = block(torch.zeros(1, 4, *small), return_attention=True)
        m_small = block.pool(torch.zeros(1, 1, *small)).numel()
    if tuple(a.shape) != (1, math.prod(small), m_small):  # pragma: no cover - guards the derivation
        raise RuntimeError(f"NonLocalBlock's affinity has shape {tuple(a.shape)}, not (1, N, M)")
    return n, m


def check_non_local_cost(full, subsampled, *, frames: int = 8, height: int = 28, width: int = 28) -> Feedback:
    r"""Exercise :ref:`ex-non-local-cost`: entries of a video non-local block's affinity.

    ``full`` is the number of entries of the ``N x M`` affinity without subsampling and
    ``subsampled`` with the block's 1x2x2 max-pooling of keys and values, for a
    ``frames x height x width`` feature map (default 8 x 28 x 28). The expected counts are N*M with
    N the number of positions and M the number of keys that ``NonLocalBlock(dimension=3)``'s own
    pooling leaves (a tiny forward with ``return_attention=True`` confirms the (B, N, M) shape).
    """
    got_full = _as_number(full, "full")
    if isinstance(got_full, Feedback):
        return got_full
    got_sub = _as_number(subsampled, "subsampled")
    if isinstance(got_sub, Feedback):
        return got_sub
    n, m_full = _non_local_entries(frames, height, width, sub_sample=False)
    _, m_sub = _non_local_entries(frames, height, width, sub_sample=True)
    exp_full, exp_sub = n * m_full, n * m_sub
    hint = _diagnose(got_full, exp_full, [
        (n, f"{n:,} is the number of positions N = {frames}*{height}*{width}; the affinity has one entry "
            "per (query, key) pair: N * N."),
        (4 * exp_full, "that is bytes in float32; count entries."),
        (height * width * height * width, "a video block attends across frames too: N counts all "
                                          f"{frames} frames."),
    ])
    if hint is not None:
        return Feedback(False, f"without subsampling: expected {exp_full:,}, got {_fmt(got_full)}. "
                               + (hint or f"N = {n:,} positions, each against all N keys."))
    hint = _diagnose(got_sub, exp_sub, [
        (n * n // 8, "the pooling is 1x2x2: it keeps all frames and halves only height and width, so "
                     "M = N/4, not N/8."),
        (n * n // 2, "the pooling halves both height and width: M = N/4, not N/2."),
        (m_sub * m_sub, "only keys and values are pooled; every one of the N positions is still a "
                        "query, so the affinity is N x M, not M x M."),
        (4 * exp_sub, "that is bytes in float32; count entries."),
        (exp_full, "that is the count without subsampling; pooling keys 1x2x2 leaves M = N/4 of them."),
    ])
    if hint is not None:
        return Feedback(False, f"with 1x2x2 subsampling: expected {exp_sub:,}, got {_fmt(got_sub)}. "
                               + (hint or f"N = {n:,} queries, M = {m_sub:,} pooled keys: N * M."))
    return Feedback(True, f"N = {n:,} positions; without subsampling N*N = {exp_full:,} entries "
                          f"({4 * exp_full / 1e6:.0f} MB in float32) per example and block; the 1x2x2 "
                          f"pooling leaves M = {m_sub:,} keys, so N*M = {exp_sub:,}, four times fewer.")


# --- chap-cost-and-inductive-bias -----------------------------------------------------------------

_VIDEO_SIZES = ((8, 16, 16), (4, 28, 28), (16, 32, 8), (1, 5, 7), (3, 3, 3))


def check_video_axial_cost(scores=None, exponent=None) -> Feedback:
    r"""Exercise :ref:`ex-cost-video`: scores per head of axial attention over video, and its growth.

    Args:
        scores: your count as a callable ``f(F, H, W)`` (checked on a few sizes). One head attends
            along time, then rows, then columns: each of the FHW positions scores the F positions
            of its time line, the H of its column and the W of its row, FHW(F + H + W) in all (the
            image case is :func:`attnlab.axial.attention_cost` ``(H, W, "axial")`` = HW(H + W)).
        exponent: the exponent ``p`` in scores ~ n^p for n = FHW and F = H = W (answer: 4/3).

    Give one or both; the answer passes when every part given is right.
    """
    if scores is None and exponent is None:
        return Feedback(False, "give scores=f(F, H, W) (a function), exponent=p (a number), or both.")
    lines = []
    if scores is not None:
        if not callable(scores):
            return Feedback(False, "scores should be a function f(F, H, W) that returns a count, got "
                                   f"{type(scores).__name__}.")
        for F_, H_, W_ in _VIDEO_SIZES:
            try:
                v = scores(F_, H_, W_)
            except Exception as e:  # noqa: BLE001 - the learner's code; report, do not crash
                return Feedback(False, f"your formula raised {type(e).__name__}: {e} for F={F_}, H={H_}, "
                                       f"W={W_}. It should take (F, H, W) and return a number.")
            v = _as_number(v, f"scores({F_}, {H_}, {W_})")
            if isinstance(v, Feedback):
                return v
            n = F_ * H_ * W_
            expected = n * (F_ + H_ + W_)
            hint = _diagnose(v, expected, [
                (n * n, "that is full attention over all FHW positions; axial attention scores each "
                        "position only against its own time line, row and column."),
                (n * (H_ + W_), "the time step is missing: along time each position also scores F frames."),
                (n * (F_ + H_ + W_ - 3), "each step also scores a position against itself (the softmax "
                                         "runs over the whole line, the position included)."),
                (F_ + H_ + W_, "that is per position; one head does this for every one of the FHW positions."),
            ])
            if hint is not None:
                return Feedback(False, f"for F={F_}, H={H_}, W={W_}: expected {expected:,} scores, got "
                                       f"{_fmt(v)}. " + (hint or "Count, for each of the FHW positions, the "
                                                                 "keys of its three axis steps."))
        lines.append("scores: FHW(F + H + W) is right.")
    if exponent is not None:
        p = _as_number(exponent, "exponent")
        if isinstance(p, Feedback):
            return p
        if not math.isclose(p, 4 / 3, abs_tol=0.01):
            hints = {2.0: "2 is full attention; axial attention scores n * 3 n^(1/3).",
                     1.5: "3/2 is the image case (each line has n^(1/2) pixels); a video line has n^(1/3).",
                     1.0: "the scores grow faster than n: each position scores 3 n^(1/3) keys.",
                     1 / 3: "n^(1/3) is the length of one line; multiply by the n positions."}
            hint = next((h for v, h in hints.items() if math.isclose(p, v, abs_tol=0.01)),
                        "with s = F = H = W, n = s^3 and the count is n * 3s; write s as a power of "
                        "n and collect the exponents.")
            return Feedback(False, f"exponent: expected 4/3 = 1.333, got {p:.4g}. {hint}")
        lines.append("exponent: 4/3 is right (3 n^(4/3) scores, against n^2 for full attention).")
    return Feedback(True, " ".join(lines))


# --- chap-cross-attention ----------------------------------------------------------------------

_CROSS_CASES = ((2, 3, 5, 8, 2), (1, 4, 4, 6, 1), (3, 1, 7, 12, 3), (2, 6, 2, 16, 4))


def _cross_reference(x, memory, weights, num_heads, key_mask, *, scale=True, heads=True):
    """The reference (or a typical mistake) from tensors: queries from x, keys/values from memory."""
    w_q, w_k, w_v, w_o = weights
    B, T, D = x.shape
    h = num_heads if heads else 1
    split = lambda t: t.view(B, t.shape[1], h, D // h).transpose(1, 2)  # (B, h, L, d)
    q, k, v = split(x @ w_q.T), split(memory @ w_k.T), split(memory @ w_v.T)
    s = q @ k.transpose(-2, -1) / (math.sqrt(D // h) if scale else 1.0)  # (B, h, T, S)
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    out = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, D)
    return out @ w_o.T


def check_cross_attention(fn) -> Feedback:
    r"""Exercise :ref:`ex-cross-build`: multi-head cross-attention from ``functional`` alone.

    ``fn(x, memory, w_q, w_k, w_v, w_o, num_heads, key_mask)`` gets decoder states ``x``
    ``(B, T, D)``, the encoder's output ``memory`` ``(B, S, D)``, four ``(D, D)`` weight matrices
    used as ``nn.Linear`` uses them (``x @ w_q.T``), the number of heads and ``key_mask``
    ``(B, S)`` (True = a real source token, or None), and returns ``(B, T, D)``. It is held
    against :class:`attnlab.attention.MultiHeadAttention` with the same weights (no biases) on
    several shapes with ``T != S``, with and without padding.
    """
    from attnlab.attention import MultiHeadAttention

    if not callable(fn):
        return Feedback(False, f"pass your function itself, got {type(fn).__name__}.")
    g = torch.Generator().manual_seed(0)
    for B, T, S, D, h in _CROSS_CASES:
        ref = MultiHeadAttention(D, h, bias=False).double()
        weights = [p.weight.detach() for p in (ref.q_proj, ref.k_proj, ref.v_proj, ref.out_proj)]
        x = torch.randn(B, T, D, generator=g, dtype=torch.float64)
        memory = torch.randn(B, S, D, generator=g, dtype=torch.float64)
        key_mask = torch.ones(B, S, dtype=torch.bool)
        key_mask[0, S // 2 + 1:] = False  # sentence 0 is padded
        for mask in (None, key_mask):
            case = (f"B={B}, T={T}, S={S}, D={D}, heads={h}, "
                    + ("with padding" if mask is not None else "no padding"))
            try:
                got = fn(x, memory, *weights, h, mask)
            except Exception as e:  # noqa: BLE001 - the learner's code; report, do not crash
                return Feedback(False, f"your function raised {type(e).__name__}: {e} ({case}).")
            if got is None or (isinstance(got, str) and got == "not done"):
                return Feedback(False, "not done yet: your function returned nothing.")
            if isinstance(got, tuple):
                got = got[0]
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != (B, T, D):
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                return Feedback(False, f"expected an output of shape (B, T, D) = {(B, T, D)}, got "
                                       f"{shape} ({case}). One row per decoder step (T), not per "
                                       "source token (S).")
            with torch.no_grad():
                expected = ref(x, memory, memory, key_mask=mask)
            err = (got.detach().double() - expected).abs().max().item()
            if err <= 1e-6:
                continue
            mistakes = [
                (_cross_reference(x, memory, weights, h, None), "the padding mask is ignored: "
                 "block the keys where key_mask is False (pass it to scaled_dot_product_attention "
                 "as a (B, 1, 1, S) mask)."),
                (_cross_reference(x, memory, weights, h, mask, scale=False), "the scores are not "
                 "scaled: divide by sqrt(d), d = D / num_heads (the kernel does this for you)."),
                (_cross_reference(x, memory, weights, h, mask, heads=False), "one head of width D "
                 "is computed: split q, k and v into num_heads heads of width D / num_heads."),
            ]
            hint = next((m for e, m in mistakes if e is not None and m
                         and (got.detach().double() - e).abs().max().item() <= 1e-6), None)
            return Feedback(False, f"largest difference {err:.3g} from the reference ({case}). "
                            + (hint or "Queries come from x (the decoder), keys and values from "
                               "memory (the encoder); check the projections (x @ w.T), the head "
                               "split and the output projection w_o."))
    return Feedback(True, f"equal to MultiHeadAttention on {2 * len(_CROSS_CASES)} cases "
                          "(T != S, several heads, with and without padding).")


# --- chap-efficient-attention ------------------------------------------------------------------

def _merge_reference(m1, l1, a1, m2, l2, a2):
    m = torch.maximum(m1, m2)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    f1, f2 = torch.exp(m1 - shift), torch.exp(m2 - shift)
    return m, l1 * f1 + l2 * f2, a1 * f1 + a2 * f2


def _half(scores, values):
    """(m, l, a) of one half of the keys: max score, sum of e^(s - m), weighted sum of values."""
    m = scores.amax(-1, keepdim=True)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(scores - shift)
    return m, p.sum(-1, keepdim=True), p @ values


def check_online_softmax_merge(fn) -> Feedback:
    r"""Exercise :ref:`ex-eff-merge`: merge the running (m, l, a) of two halves of the keys.

    ``fn(m1, l1, a1, m2, l2, a2)`` returns ``(m, l, a)``: :math:`m = \max(m_1, m_2)`,
    :math:`\ell = \ell_1 e^{m_1 - m} + \ell_2 e^{m_2 - m}`, :math:`a = a_1 e^{m_1 - m} + a_2
    e^{m_2 - m}`. Checked on random halves (scores up to 1e3, where a plain exponential
    overflows), on a half with no visible key, and on a query with no visible key at all; then
    ``a / l`` must equal the softmax attention of all the keys.
    """
    if not callable(fn):
        return Feedback(False, f"pass your function itself, got {type(fn).__name__}.")
    g = torch.Generator().manual_seed(0)
    T, S, dv = 4, 10, 3
    cases = {"random scores": torch.randn(T, S, generator=g, dtype=torch.float64),
             "scores near 1000": 1000 + torch.randn(T, S, generator=g, dtype=torch.float64)}
    empty_half = torch.randn(T, S, generator=g, dtype=torch.float64)
    empty_half[:, S // 2:] = -math.inf  # the second half of the keys is blocked
    cases["a half with no visible key"] = empty_half
    nothing = torch.randn(T, S, generator=g, dtype=torch.float64)
    nothing[0] = -math.inf  # query 0 sees no key at all
    cases["a query with no visible key"] = nothing
    values = torch.randn(S, dv, generator=g, dtype=torch.float64)
    for case, scores in cases.items():
        h1 = _half(scores[:, :S // 2], values[:S // 2])
        h2 = _half(scores[:, S // 2:], values[S // 2:])
        try:
            got = fn(*h1, *h2)
        except Exception as e:  # noqa: BLE001 - the learner's code; report, do not crash
            return Feedback(False, f"your function raised {type(e).__name__}: {e} ({case}).")
        if got is None:
            return Feedback(False, "not done yet: your function returned nothing.")
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            return Feedback(False, "return the three merged quantities (m, l, a) as a tuple.")
        m, ell, a = (torch.as_tensor(t, dtype=torch.float64) for t in got)
        want = _merge_reference(*h1, *h2)
        if tuple(a.shape) != (T, dv) or tuple(ell.shape) not in ((T, 1), (T,)):
            return Feedback(False, f"expected l of shape (T, 1) = {(T, 1)} and a of shape "
                                   f"(T, d_v) = {(T, dv)}, got {tuple(ell.shape)} and "
                                   f"{tuple(a.shape)} ({case}).")
        if torch.isnan(a).any() or torch.isnan(ell).any():
            return Feedback(False, f"NaN in your result ({case}). When a maximum is -inf, "
                                   "exp(m_i - m) is exp(-inf + inf): shift by 0 instead.")
        if not torch.allclose(m.reshape(T, 1), want[0], equal_nan=True):
            return Feedback(False, f"m should be the larger of m1 and m2 ({case}).")
        ell = ell.reshape(T, 1)
        if not (torch.allclose(ell, want[1], rtol=1e-9) and torch.allclose(a, want[2], rtol=1e-9)):
            plain = (h1[1] + h2[1], h1[2] + h2[2])
            if torch.allclose(ell, plain[0]) and torch.allclose(a, plain[1]):
                return Feedback(False, f"you added the halves without rescaling ({case}): each "
                                       "half was summed under its own maximum m_i; multiply by "
                                       "exp(m_i - m) first.")
            return Feedback(False, f"l or a differ from the merge of all the keys ({case}). "
                                   "Rescale each half by exp(m_i - m), m = max(m1, m2).")
    out = torch.where(want[1] > 0, want[2] / want[1].clamp_min(1e-300), 0.0)
    ref = torch.softmax(nothing[1:], -1) @ values
    if not torch.allclose(out[1:], ref):
        return Feedback(False, "a / l does not give softmax attention.")  # pragma: no cover
    return Feedback(True, "m = max(m1, m2), l and a rescaled by exp(m_i - m): a / l is softmax "
                          "attention over all the keys, with no overflow and no NaN.")


def _graded(check):
    """Wrap a checker: its feedback is also appended to ``$ATTNLAB_GRADE_LOG`` when set."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        feedback = check(*args, **kwargs)
        log = os.environ.get("ATTNLAB_GRADE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(json.dumps({"exercise": check.__name__, "ok": bool(feedback.ok),
                                    "message": str(feedback)}) + "\n")
        return feedback
    return wrapper


for _name in [n for n in __all__ if n.startswith("check_")]:
    globals()[_name] = _graded(globals()[_name])
