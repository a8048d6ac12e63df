r"""Attention as a function: score, (scale and) softmax, weighted sum.

.. math::

    \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d}}
    + M\right) V

Score functions :math:`a(q, k)` compare one query with one key; :func:`masked_softmax` turns a
row of scores into weights that sum to one over the keys a query may see; the output is the
weighted sum of the values.

:func:`scaled_dot_product_attention` is the book's one softmax-attention kernel: every mechanism
that computes softmax attention (self-attention, multi-head and cross-attention, axial
attention, the Gaussian non-local blocks) calls it. It alone chooses between PyTorch's fused
kernel and the readable explicit path, checks and merges masks, keeps fully masked rows at zero
and applies attention dropout.

Mask convention (the one of :func:`torch.nn.functional.scaled_dot_product_attention`): a boolean
mask is **True where a query may attend to a key**; a float mask is *added* to the scores
(``-inf`` blocks). A mask must broadcast *to* the scores' shape ``(..., T, S)``. A query row
whose keys are all blocked gets weights of zero and an output of zero, never NaN; a NaN score
is never hidden: it gives NaN weights.

Weights and dropout: the weights returned (``return_attention=True``) are the softmax
*before* dropout, the distribution a reader wants to see; in training, the output is computed
from the dropped-out weights.

Shapes: ``q`` is ``(..., T, d)``, ``k`` is ``(..., S, d)``, ``v`` is ``(..., S, d_v)``; any
leading dimensions (``B`` or ``B, h``) broadcast.

Taught in: :ref:`chap-soft-lookup`.

Reference: Bahdanau, Cho, Bengio, *Neural Machine Translation by Jointly Learning to Align and
Translate*, 2014, arXiv:1409.0473 (additive scores); Luong, Pham, Manning, *Effective Approaches to
Attention-based Neural Machine Translation*, 2015, arXiv:1508.04025 (dot-product scores); Vaswani
et al., *Attention Is All You Need*, 2017, arXiv:1706.03762 (scaled dot product).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab import checks

__all__ = [
    "dot_product_score", "scaled_dot_product_score", "additive_score", "cosine_score",
    "masked_softmax", "causal_mask", "sliding_window_mask", "merge_masks",
    "scaled_dot_product_attention",
]


def _check_qk(q, k) -> None:
    for name, t, letters in (("q", q, "T, d"), ("k", k, "S, d")):
        checks.tensor(t, name)
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., {letters}), got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d: q has {q.shape[-1]}, "
                         f"k has {k.shape[-1]}")


def _check_qkv(q, k, v) -> torch.Size:
    """Check q (..., T, d), k (..., S, d), v (..., S, d_v); return the broadcast leading shape."""
    _check_qk(q, k)
    checks.tensor(v, "v")
    if v.dim() < 2 or v.shape[-2] != k.shape[-2]:
        raise ValueError(f"v must have shape (..., S, d_v) with S = {k.shape[-2]} keys, "
                         f"got {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    try:
        return torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} and "
                         f"v {tuple(v.shape)} do not broadcast together") from None


def dot_product_score(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Dot-product score :math:`a(q, k) = q^\top k` (Luong et al., 2015).

    Shape: q ``(..., T, d)``, k ``(..., S, d)`` -> ``(..., T, S)``.
    """
    _check_qk(q, k)
    return q @ k.transpose(-2, -1)  # (..., T, S)


def scaled_dot_product_score(q: torch.Tensor, k: torch.Tensor,
                             scale: float | None = None) -> torch.Tensor:
    r"""Scaled dot-product score :math:`a(q, k) = q^\top k / \sqrt{d}` (Vaswani et al., 2017).

    Dividing by :math:`\sqrt{d}` keeps the variance of the score near 1 when the entries of q and
    k have unit variance, so the softmax does not saturate as d grows. ``scale`` overrides
    :math:`1/\sqrt{d}`.
    """
    _check_qk(q, k)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q @ k.transpose(-2, -1)) * scale  # (..., T, S)


def additive_score(q: torch.Tensor, k: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor,
                   w_v: torch.Tensor) -> torch.Tensor:
    r"""Additive (MLP) score :math:`a(q, k) = w_v^\top \tanh(W_q q + W_k k)` (Bahdanau et al.).

    Queries and keys may have different widths. Args: ``w_q`` ``(d_h, d_q)``, ``w_k``
    ``(d_h, d_k)``, ``w_v`` ``(d_h,)``. Shape: q ``(..., T, d_q)``, k ``(..., S, d_k)`` ->
    ``(..., T, S)``.
    """
    for name, t in (("q", q), ("k", k), ("w_q", w_q), ("w_k", w_k), ("w_v", w_v)):
        checks.tensor(t, name)
    if q.shape[-1] != w_q.shape[-1] or w_q.dim() != 2:
        raise ValueError(f"w_q must have shape (d_h, {q.shape[-1]}), got {tuple(w_q.shape)}")
    if k.shape[-1] != w_k.shape[-1] or w_k.dim() != 2:
        raise ValueError(f"w_k must have shape (d_h, {k.shape[-1]}), got {tuple(w_k.shape)}")
    if w_v.dim() != 1 or not (w_q.shape[0] == w_k.shape[0] == w_v.shape[0]):
        raise ValueError("w_q (d_h, d_q), w_k (d_h, d_k) and w_v (d_h,) must share d_h: got "
                         f"{tuple(w_q.shape)}, {tuple(w_k.shape)}, {tuple(w_v.shape)}")
    features = torch.tanh((q @ w_q.T).unsqueeze(-2) + (k @ w_k.T).unsqueeze(-3))  # (..., T, S, d_h)
    return features @ w_v  # (..., T, S)


def cosine_score(q: torch.Tensor, k: torch.Tensor, temperature: float = 1.0,
                 eps: float = 1e-8) -> torch.Tensor:
    r"""Cosine score :math:`a(q, k) = \cos(q, k) / \tau`, bounded in :math:`[-1/\tau, 1/\tau]`.

    A zero vector scores 0 against everything. Half-precision inputs are normalised in float32
    (``eps`` would round to zero in float16) and the scores cast back.
    """
    _check_qk(q, k)
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    work = torch.promote_types(q.dtype, torch.float32)
    qn = F.normalize(q.to(work), dim=-1, eps=eps)
    kn = F.normalize(k.to(work), dim=-1, eps=eps)
    return ((qn @ kn.transpose(-2, -1)) / temperature).to(q.dtype)  # (..., T, S)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None,
                   dim: int = -1) -> torch.Tensor:
    r"""Softmax over the keys a query may see; blocked keys get weight exactly 0.

    .. math:: \alpha_{ts} = \frac{m_{ts}\, e^{a_{ts}}}{\sum_{s'} m_{ts'}\, e^{a_{ts'}}}

    Args:
        scores: ``(..., T, S)`` scores.
        mask: bool, True = may attend, or float, added to the scores; broadcasts to ``scores``.
        dim: the key dimension.

    A row with no visible key (all blocked, or all scores ``-inf``) gives zeros, not NaN; a row
    with a NaN score gives NaN, as :func:`torch.softmax` does (a bad number is never hidden).
    The softmax is computed in at least float32 and cast back, so float16/bfloat16 scores and
    logits as large as 1e4 stay finite.
    """
    checks.tensor(scores, "scores")
    work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        checks.mask_for(mask, scores.shape)
        if mask.dtype == torch.bool:
            work = work.masked_fill(~mask, float("-inf"))
        else:
            work = work + mask.to(work.dtype)
    # softmax(-inf, ..., -inf) would be NaN: a row with no visible key gets zeros instead.
    # A row is blocked when its largest score is -inf (one reduction, no (T, S) bool tensor).
    if work.shape[dim] == 0:
        return torch.softmax(work, dim=dim).to(scores.dtype)
    blocked = work.detach().amax(dim=dim, keepdim=True) == float("-inf")  # (..., T, 1)
    if not bool(blocked.any()):  # the common case: no fix-up, no extra (T, S) tensor kept
        return torch.softmax(work, dim=dim).to(scores.dtype)
    work = work.masked_fill(blocked, 0.0)
    return torch.softmax(work, dim=dim).masked_fill(blocked, 0.0).to(scores.dtype)


def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    r"""Boolean ``(T, S)`` mask, True where key ``s <= t`` (a query sees the past and itself).

    With ``S > T`` the queries are taken to be the last ``T`` positions (as when decoding with a
    cache); this matches ``is_causal=True`` of ``F.scaled_dot_product_attention`` when ``S == T``.
    """
    S = T if S is None else S
    checks.positive_int(T, "T"), checks.positive_int(S, "S")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def sliding_window_mask(T: int, S: int | None = None, window: int = 1, sinks: int = 0,
                        device=None) -> torch.Tensor:
    r"""Boolean ``(T, S)`` band: query t sees key s when :math:`0 \le t - s < W` (itself and the
    W - 1 keys before it), and, with ``sinks`` > 0, the first ``sinks`` keys as well.

    As in :func:`causal_mask`, with ``S > T`` the queries are the last T positions.

    Reference: Beltagy, Peters, Cohan, *Longformer*, 2020, arXiv:2004.05150 (sliding windows);
    Xiao et al., *Efficient Streaming Language Models with Attention Sinks*, 2023,
    arXiv:2309.17453 (sinks).
    """
    S = T if S is None else S
    checks.positive_int(T, "T"), checks.positive_int(S, "S"), checks.positive_int(window, "window")
    if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
        raise ValueError(f"sinks must be an int >= 0, got {sinks!r}")
    t = torch.arange(S - T, S, device=device)[:, None]  # (T, 1)
    s = torch.arange(S, device=device)[None, :]  # (1, S)
    return (s <= t) & ((t - s < window) | (s < sinks))  # (T, S)


def merge_masks(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Combine two masks: bool & bool stays bool (True = may attend); otherwise a float mask."""
    if a is None or b is None:
        return a if b is None else b
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    dtype = a.dtype if a.is_floating_point() else b.dtype

    def to_float(m):
        if m.dtype != torch.bool:
            return m.to(dtype)
        return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, float("-inf"))
    return to_float(a) + to_float(b)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, *, scale: float | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 return_attention: bool = False):
    r"""Scaled dot-product attention :math:`\operatorname{softmax}(QK^\top/\sqrt{d} + M)\,V`.

    Args:
        q: queries ``(..., T, d)``.
        k: keys ``(..., S, d)``.
        v: values ``(..., S, d_v)``.
        mask: bool (True = may attend) or float (added to the scores); must broadcast to
            ``(..., T, S)``.
        scale: multiplies the scores; default :math:`1/\sqrt{d}`.
        dropout_p: dropout on the weights (pass 0.0 at evaluation time).
        is_causal: also block keys after each query (:func:`causal_mask`).
        return_attention: also return the weights ``(..., T, S)`` (before dropout).

    Returns:
        ``out`` of shape ``(..., T, d_v)``, or ``(out, weights)`` when ``return_attention``.

    When the weights are not requested the fused kernel
    :func:`torch.nn.functional.scaled_dot_product_attention` does the work; otherwise the
    explicit path (three lines at the end) runs. A test holds the two equal.

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
    """
    batch = _check_qkv(q, k, v)
    checks.probability(dropout_p, "dropout_p")
    T, S = q.shape[-2], k.shape[-2]
    if mask is not None:
        checks.mask_for(mask, (*batch, T, S))
        if mask.is_floating_point():
            mask = mask.to(q.dtype)
    if is_causal:
        mask = merge_masks(mask, causal_mask(T, S, device=q.device))  # (..., T, S)

    if not return_attention:  # fused path
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                             scale=scale)
        if mask is not None:  # "no visible key -> zeros" on every backend and version
            visible = mask if mask.dtype == torch.bool else mask > float("-inf")
            out = out.masked_fill(~visible.any(-1, keepdim=True), 0.0)
        return out

    scores = scaled_dot_product_score(q, k, scale)  # (..., T, S)
    weights = masked_softmax(scores, mask)  # (..., T, S), rows sum to 1 (or are all 0)
    return F.dropout(weights, p=dropout_p) @ v, weights  # (..., T, d_v), (..., T, S)
