r"""Attention as a function: score, (scale and) softmax, weighted sum.

.. math::

    \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d}}
    + M\right) V

Score functions :math:`a(q, k)` compare one query with one key; :func:`masked_softmax` turns a
row of scores into weights that sum to one over the keys a query may see; the output is the
weighted sum of the values.

Mask convention (the one of :func:`torch.nn.functional.scaled_dot_product_attention`): a boolean
mask is **True where a query may attend to a key**; a float mask is *added* to the scores
(``-inf`` blocks). A query row whose keys are all blocked gets weights of zero and an output of
zero, never NaN.

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

__all__ = [
    "dot_product_score", "scaled_dot_product_score", "additive_score", "cosine_score",
    "masked_softmax", "scaled_dot_product_attention", "causal_mask",
]


def _check_qk(q: torch.Tensor, k: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., length, d), got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d: q has {q.shape[-1]}, "
                         f"k has {k.shape[-1]}")


def dot_product_score(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Dot-product score :math:`a(q, k) = q^\top k` (Luong et al., 2015).

    Shape: q ``(..., T, d)``, k ``(..., S, d)`` -> ``(..., T, S)``.
    """
    _check_qk(q, k)
    return q @ k.transpose(-2, -1)  # (..., T, S)


def scaled_dot_product_score(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
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
    r"""Additive (MLP) score :math:`a(q, k) = w_v^\top \tanh(W_q q + W_k k)` (Bahdanau et al., 2014).

    Queries and keys may have different widths. Args: ``w_q`` ``(d_h, d_q)``, ``w_k``
    ``(d_h, d_k)``, ``w_v`` ``(d_h,)``. Shape: q ``(..., T, d_q)``, k ``(..., S, d_k)`` ->
    ``(..., T, S)``.
    """
    if q.shape[-1] != w_q.shape[-1]:
        raise ValueError(f"w_q must have shape (d_h, {q.shape[-1]}), got {tuple(w_q.shape)}")
    if k.shape[-1] != w_k.shape[-1]:
        raise ValueError(f"w_k must have shape (d_h, {k.shape[-1]}), got {tuple(w_k.shape)}")
    if not (w_q.shape[0] == w_k.shape[0] == w_v.shape[-1]):
        raise ValueError("w_q, w_k and w_v must share the hidden width d_h: got "
                         f"{w_q.shape[0]}, {w_k.shape[0]}, {w_v.shape[-1]}")
    features = torch.tanh((q @ w_q.T).unsqueeze(-2) + (k @ w_k.T).unsqueeze(-3))  # (..., T, S, d_h)
    return features @ w_v  # (..., T, S)


def cosine_score(q: torch.Tensor, k: torch.Tensor, temperature: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    r"""Cosine score :math:`a(q, k) = \cos(q, k) / \tau`, bounded in :math:`[-1/\tau, 1/\tau]`."""
    _check_qk(q, k)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    qn = q / q.norm(dim=-1, keepdim=True).clamp_min(eps)
    kn = k / k.norm(dim=-1, keepdim=True).clamp_min(eps)
    return (qn @ kn.transpose(-2, -1)) / temperature  # (..., T, S)


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor (bool or float), got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask must be bool (True = may attend) or floating point (added to the "
                        f"scores), got dtype {mask.dtype}")
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' "
                         f"shape (..., T, S) = {tuple(scores_shape)}") from None


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    r"""Softmax over the keys a query may see; blocked keys get weight exactly 0.

    .. math:: \alpha_{ts} = \frac{m_{ts}\, e^{a_{ts}}}{\sum_{s'} m_{ts'}\, e^{a_{ts'}}}

    Args:
        scores: ``(..., T, S)`` scores.
        mask: bool, True = may attend, or float, added to the scores; broadcastable to ``scores``.
        dim: the key dimension.

    A row with no visible key (all blocked, or all scores ``-inf``) gives zeros, not NaN. The softmax is computed in at least float32
    and cast back, so float16/bfloat16 scores and logits as large as 1e4 stay finite.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError("scores must be a floating-point torch.Tensor")
    work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        _check_mask(mask, scores.shape)
        work = work.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else work + mask.to(work.dtype)
    # A score of -inf blocks a key, with or without a mask. A row with no visible key would be
    # softmax(-inf, ..., -inf) = NaN: give it finite scores, then zero its weights.
    any_visible = (work > float("-inf")).any(dim=dim, keepdim=True)  # (..., T, 1)
    if bool(any_visible.all()):  # the common case: no fix-up, no extra (T, S) tensor kept
        return torch.softmax(work, dim=dim).to(scores.dtype)
    work = work.masked_fill(~any_visible, 0.0)
    return (torch.softmax(work, dim=dim) * any_visible).to(scores.dtype)


def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    r"""Boolean ``(T, S)`` mask, True where key ``s <= t`` (a query sees the past and itself).

    With ``S > T`` the queries are taken to be the last ``T`` positions (as when decoding with a
    cache); this matches ``is_causal=True`` of ``F.scaled_dot_product_attention`` when ``S == T``.
    """
    S = T if S is None else S
    if T < 1 or S < 1:
        raise ValueError(f"T and S must be >= 1, got T={T}, S={S}")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, *, scale: float | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 return_attention: bool = False):
    r"""Scaled dot-product attention :math:`\operatorname{softmax}(QK^\top/\sqrt{d} + M)\,V`.

    Args:
        q: queries ``(..., T, d)``.
        k: keys ``(..., S, d)``.
        v: values ``(..., S, d_v)``.
        mask: bool (True = may attend) or float (added to the scores), broadcastable to
            ``(..., T, S)``.
        scale: multiplies the scores; default :math:`1/\sqrt{d}`.
        dropout_p: dropout on the weights (pass 0.0 at evaluation time).
        is_causal: also block keys after each query (:func:`causal_mask`).
        return_attention: also return the weights ``(..., T, S)``.

    Returns:
        ``out`` of shape ``(..., T, d_v)``, or ``(out, weights)`` when ``return_attention``.

    When the weights are not requested the fused kernel
    :func:`torch.nn.functional.scaled_dot_product_attention` does the work; otherwise the
    explicit path below runs. A test holds the two equal.

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
    """
    _check_qk(q, k)
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"v must be a torch.Tensor, got {type(v).__name__}")
    if v.dim() < 2 or v.shape[-2] != k.shape[-2]:
        raise ValueError(f"v must have shape (..., S, d_v) with S = {k.shape[-2]} keys, "
                         f"got {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    T, S = q.shape[-2], k.shape[-2]
    scores_shape = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (T, S)
    if mask is not None:
        _check_mask(mask, scores_shape)
    if is_causal:
        causal = causal_mask(T, S, device=q.device)
        if mask is None:
            mask = causal
        elif mask.dtype == torch.bool:
            mask = mask & causal
        else:
            mask = mask.masked_fill(~causal, float("-inf"))

    if not return_attention:  # fused path
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        if mask is not None:  # make "no visible key -> zeros" hold on every backend and version
            visible = mask if mask.dtype == torch.bool else torch.isfinite(mask)
            out = out.masked_fill(~visible.any(-1, keepdim=True), 0.0)
        return out

    scores = scaled_dot_product_score(q, k, scale)  # (..., T, S)
    weights = masked_softmax(scores, mask)  # (..., T, S), rows sum to 1 (or are all 0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (..., T, d_v), (..., T, S)
