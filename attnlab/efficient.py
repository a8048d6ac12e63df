r"""Cheaper attention: exact attention in key blocks, separable attention, linear attention.

Softmax attention over :math:`n` tokens of width :math:`d` costs :math:`O(n^2 d)` time and, written
out, an :math:`n \times n` matrix of memory. Three ways round it:

- **Online softmax** (:func:`online_softmax_attention`; exact, one block of scores at a time).
  Over key blocks :math:`S_j = QK_j^\top/\sqrt d`, keep per query a running maximum :math:`m`,
  normaliser :math:`\ell` and weighted sum :math:`a`:
  :math:`m' = \max(m, \operatorname{rowmax} S_j)`,
  :math:`\ell \leftarrow \ell e^{m - m'} + \operatorname{rowsum} e^{S_j - m'}`,
  :math:`a \leftarrow a e^{m - m'} + e^{S_j - m'} V_j`; at the end
  :math:`\operatorname{out} = a/\ell`. The idea inside FlashAttention.
- **Separable self-attention** (:class:`SeparableSelfAttention`, MobileViTv2, :math:`O(nd)`):
  one score per token, :math:`c = \operatorname{softmax}_n(XW_I)`, one context vector
  :math:`\bar k = \sum_n c_n x_n W_K`, and :math:`y_n = (\operatorname{ReLU}(x_n W_V) \odot
  \bar k) W_O`.
- **Linear attention** (:func:`linear_attention`, :math:`O(nd^2)`): a kernel
  :math:`\phi(q)^\top\phi(k)` in place of :math:`\exp(q^\top k)`, then associativity:
  :math:`\operatorname{out}_t = \phi(q_t)^\top \sum_s \phi(k_s) v_s^\top \,/\,
  \phi(q_t)^\top \sum_s \phi(k_s)`.

Shapes: ``q`` ``(..., T, d)``, ``k`` ``(..., S, d)``, ``v`` ``(..., S, d_v)``; ``x`` ``(B, N, D)``.
Masks follow the book: boolean True = may attend, float masks are added to the scores.

Reference: M. Milakov, N. Gimelshein, *Online normalizer calculation for softmax*, 2018,
arXiv:1805.02867; T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Ré, *FlashAttention: Fast and
Memory-Efficient Exact Attention with IO-Awareness*, 2022, arXiv:2205.14135; S. Mehta,
M. Rastegari, *Separable Self-attention for Mobile Vision Transformers*, 2022, arXiv:2206.02680;
A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, *Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention*, 2020, arXiv:2006.16236.

Taught in: :ref:`chap-efficient-attention`.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import checks
from attnlab.functional import _check_qkv, causal_mask, merge_masks

__all__ = ["online_softmax_attention", "SeparableSelfAttention", "linear_attention",
           "attention_flops"]


def online_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             mask: torch.Tensor | None = None, *, block_size: int = 64,
                             is_causal: bool = False, scale: float | None = None,
                             dropout_p: float = 0.0, return_attention: bool = False):
    r"""Exact softmax attention computed one block of keys at a time (the online softmax).

    .. math::

        m' = \max(m, \operatorname{rowmax} S_j), \quad
        \ell \leftarrow \ell\, e^{m - m'} + \operatorname{rowsum} e^{S_j - m'}, \quad
        a \leftarrow a\, e^{m - m'} + e^{S_j - m'} V_j, \qquad \operatorname{out} = a / \ell

    with :math:`S_j = Q K_j^\top \cdot \text{scale} + M_j` the scores of key block :math:`j`.
    The maximum :math:`m` only shifts the exponents (the result does not depend on it), so no
    gradient flows through it; autograd differentiates the rest of the loop.

    Args:
        q: queries ``(..., T, d)``.
        k: keys ``(..., S, d)``.
        v: values ``(..., S, d_v)``.
        mask: bool (True = may attend) or float (added to the scores); broadcasts to
            ``(..., T, S)``.
        block_size: number of keys per block.
        is_causal: also block keys after each query (:func:`attnlab.functional.causal_mask`:
            aligned with the last keys when ``S > T``, as the book's kernel does).
        scale: multiplies the scores; default :math:`1/\sqrt{d}`.
        dropout_p: must be 0 (attention dropout needs the whole weight matrix; present so that
            the function fits the ``attention`` seam of
            :class:`attnlab.attention.MultiHeadAttention`).
        return_attention: also return the weights ``(..., T, S)``, recomputed at the end from
            the final :math:`m` and :math:`\ell` (as FlashAttention's backward pass does); this
            stores the matrix the loop avoided, so ask only to look.

    Shape: ``(..., T, d_v)``. A query whose keys are all blocked gets zeros, never NaN.

    Reference: Milakov and Gimelshein, *Online normalizer calculation for softmax*, 2018,
    arXiv:1805.02867; Dao et al., *FlashAttention*, 2022, arXiv:2205.14135.
    Taught in: :ref:`chap-efficient-attention`.
    """
    batch = _check_qkv(q, k, v)
    checks.positive_int(block_size, "block_size")
    if checks.probability(dropout_p, "dropout_p") > 0:
        raise ValueError(f"dropout_p must be 0 for the online softmax, got {dropout_p}")
    if scale is not None and (not isinstance(scale, numbers.Real) or isinstance(scale, bool)):
        raise TypeError(f"scale must be a number or None, got {type(scale).__name__}")
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else checks.number(scale, "scale")
    if mask is not None:
        checks.mask_for(mask, (*batch, T, S))
    if is_causal:
        mask = merge_masks(mask, causal_mask(T, S, device=q.device))
    if mask is not None and mask.dtype == torch.bool:  # one additive form: 0 or -inf
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, -math.inf)

    def scores(j):  # S_j = Q K_j^T * scale + M_j: (..., T, b)
        s_j = (q @ k[..., j:j + block_size, :].transpose(-2, -1)) * scale
        return s_j if mask is None else s_j + mask[..., j:j + block_size].to(q.dtype)

    m = torch.full((*batch, T, 1), -math.inf, dtype=q.dtype, device=q.device)  # running max
    ell = torch.zeros((*batch, T, 1), dtype=q.dtype, device=q.device)  # running normaliser
    acc = torch.zeros((*batch, T, v.shape[-1]), dtype=q.dtype, device=q.device)  # running sum
    for j in range(0, S, block_size):
        s_j, v_j = scores(j), v[..., j:j + block_size, :]  # (..., T, b), (..., b, d_v)
        m_new = torch.maximum(m, s_j.detach().amax(-1, keepdim=True))  # m' = max(m, rowmax S_j)
        shift = m_new.masked_fill(m_new == -math.inf, 0.0)  # nothing visible yet: shift by 0
        p_j = torch.exp(s_j - shift)  # e^{S_j - m'}: (..., T, b), 0 where blocked
        rescale = torch.exp(m - shift)  # e^{m - m'}: (..., T, 1), 0 on the first visible block
        ell = ell * rescale + p_j.sum(-1, keepdim=True)  # l <- l e^{m-m'} + rowsum e^{S_j-m'}
        acc = acc * rescale + p_j @ v_j  # a <- a e^{m - m'} + e^{S_j - m'} V_j
        m = m_new
    ell = torch.where(ell > 0, ell, 1.0)  # no visible key: a stays 0
    if not return_attention:
        return acc / ell  # out = a / l
    shift = m.masked_fill(m == -math.inf, 0.0)
    blocks = [torch.exp(scores(j) - shift) for j in range(0, S, block_size)]  # no keys: no block
    weights = (torch.cat(blocks, -1) if blocks else acc.new_zeros((*batch, T, 0))) / ell
    return acc / ell, weights  # (..., T, d_v), (..., T, S)


class SeparableSelfAttention(nn.Module):
    r"""Separable self-attention of MobileViTv2: one context vector, cost :math:`O(N D)`.

    .. math::

        c = \operatorname{softmax}_n(X W_I) \in \mathbb{R}^N, \quad
        \bar k = \sum_n c_n\, x_n W_K \in \mathbb{R}^D, \quad
        y_n = \bigl(\operatorname{ReLU}(x_n W_V) \odot \bar k\bigr) W_O

    Each token gets one *context score* :math:`c_n` (a softmax over the tokens, not over pairs);
    the scores weight the keys into one context vector :math:`\bar k`, which gates every
    token's values. No :math:`N \times N` matrix is formed.

    Args:
        embed_dim: width D of the tokens.
        bias: add biases to the four projections.
        attn_drop: dropout on the context scores (training only).

    Shape:
        x ``(B, N, D)`` -> ``(B, N, D)``; with ``return_attention=True`` also the context scores
        ``(B, N)`` (before dropout; each row sums to 1 over the tokens).

    timm's ``LinearSelfAttention`` works on ``(B, C, P, N)`` patch tensors with 1x1 convolutions
    and a softmax over N for each of the P pixel positions; it is this module applied to
    ``x.permute(0, 2, 3, 1).reshape(B * P, N, C)`` (see :meth:`from_timm`).

    Reference: Mehta and Rastegari, *Separable Self-attention for Mobile Vision Transformers*,
    2022, arXiv:2206.02680. Taught in: :ref:`chap-efficient-attention`.
    """

    def __init__(self, embed_dim: int, bias: bool = True, attn_drop: float = 0.0):
        super().__init__()
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim")
        self.attn_drop = checks.probability(attn_drop, "attn_drop")
        self.score_proj = nn.Linear(embed_dim, 1, bias=bias)  # W_I: one context score per token
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_K
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_V
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_O

    @classmethod
    def from_timm(cls, module: nn.Module) -> "SeparableSelfAttention":
        """A copy of timm's ``LinearSelfAttention``, weights and attention dropout included.

        timm's one ``qkv_proj`` (a 1x1 convolution to ``1 + 2D`` channels, in the order score,
        key, value) is split into ``score_proj``, ``k_proj`` and ``v_proj``. timm's output
        dropout (``proj_drop``) has no counterpart here and is not copied.
        """
        qkv, out = getattr(module, "qkv_proj", None), getattr(module, "out_proj", None)
        if not (isinstance(qkv, nn.Conv2d) and isinstance(out, nn.Conv2d)):
            raise TypeError(f"module must be timm's LinearSelfAttention, "
                            f"got {type(module).__name__}")
        D = out.out_channels
        attn_drop = getattr(getattr(module, "attn_drop", None), "p", 0.0)
        ours = cls(D, bias=qkv.bias is not None, attn_drop=attn_drop).to(out.weight)
        weights = [*qkv.weight.flatten(1).split([1, D, D]), out.weight.flatten(1)]  # W_I|K|V|O
        biases = [*qkv.bias.split([1, D, D]), out.bias] if qkv.bias is not None else [None] * 4
        with torch.no_grad():
            for proj, w, b in zip((ours.score_proj, ours.k_proj, ours.v_proj, ours.out_proj),
                                  weights, biases):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
        return ours

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.sequence(x, "x", self.embed_dim)
        scores = torch.softmax(self.score_proj(x).squeeze(-1), dim=-1)  # c: (B, N)
        c = F.dropout(scores, self.attn_drop, self.training)
        context = torch.einsum("bn,bnd->bd", c, self.k_proj(x))  # k_bar = sum_n c_n k_n: (B, D)
        y = F.relu(self.v_proj(x)) * context[:, None, :]  # ReLU(V) * k_bar: (B, N, D)
        y = self.out_proj(y)  # W_O
        return (y, scores) if return_attention else y

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, attn_drop={self.attn_drop}"


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None = None, *, feature_map: Callable | None = None,
                     is_causal: bool = False, order: str = "right", eps: float = 1e-6,
                     dropout_p: float = 0.0, return_attention: bool = False):
    r"""Kernelised linear attention: a feature map :math:`\phi` in place of the softmax.

    .. math::

        \operatorname{out}_t = \frac{\phi(q_t)^\top \sum_s \phi(k_s) v_s^\top}
            {\phi(q_t)^\top \sum_s \phi(k_s) + \varepsilon}

    ``order="left"`` computes :math:`(\phi(Q)\phi(K)^\top) V` through the ``T x S`` matrix
    :math:`A = \phi(Q)\phi(K)^\top`, :math:`O(TSd)`; ``order="right"`` computes
    :math:`\phi(Q)(\phi(K)^\top V)` through a ``d x d_v`` matrix, :math:`O((T + S) d\, d_v)`.
    The two are the same numbers, bracketed differently. With ``is_causal=True`` the sums run
    over :math:`s \le t`: a lower-triangular mask on :math:`A` (left) or running sums (right).

    Its "attention weights" are the rows of :math:`A` divided by their sums, a ``T x S`` matrix
    of non-negative weights summing to one that the right order never forms;
    ``return_attention=True`` computes and returns them (the left order's matrix).

    Args:
        q: queries ``(..., T, d)``.
        k: keys ``(..., S, d)``.
        v: values ``(..., S, d_v)``.
        mask: boolean, True = may attend. The right order takes a key mask only (one that
            broadcasts to ``(..., 1, S)``, e.g. padding): blocked keys drop out of both sums.
        feature_map: :math:`\phi`, applied to q and k; default ``elu(x) + 1`` (positive).
        is_causal: query t sees keys s <= t only (needs ``T == S``).
        order: ``"left"`` (quadratic) or ``"right"`` (linear in the sequence length).
        eps: added to the normaliser (a finite number >= 0). A query whose normaliser is 0
            (no visible key, with ``eps=0``) gets zeros, never NaN.
        dropout_p: must be 0 (present so that the function fits the ``attention`` seam of
            :class:`attnlab.attention.MultiHeadAttention`).
        return_attention: also return the normalised weights ``(..., T, S)``.

    Shape: ``(..., T, d_v)``, and ``(..., T, S)`` weights when asked.

    Reference: Katharopoulos et al., *Transformers are RNNs: Fast Autoregressive Transformers
    with Linear Attention*, 2020, arXiv:2006.16236. Taught in: :ref:`chap-efficient-attention`.
    """
    batch = _check_qkv(q, k, v)
    checks.one_of(order, "order", ("left", "right"))
    if checks.probability(dropout_p, "dropout_p") > 0:
        raise ValueError(f"dropout_p must be 0 for linear attention, got {dropout_p}")
    T, S = q.shape[-2], k.shape[-2]
    if mask is not None:
        checks.mask_for(mask, (*batch, T, S))
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be boolean for linear attention, got {mask.dtype}")
        if order == "right" and mask.dim() >= 2 and mask.shape[-2] != 1:
            raise ValueError("the right order takes a key mask only, broadcasting to (..., 1, S); "
                             f"got {tuple(mask.shape)}: use order='left' for a (T, S) mask")
    if feature_map is not None and not callable(feature_map):
        raise TypeError(f"feature_map must be a function or None, got {type(feature_map).__name__}")
    if checks.number(eps, "eps") < 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if is_causal and T != S:
        raise ValueError(f"causal linear attention needs as many queries as keys (T == S), "
                         f"got T = {T}, S = {S}")
    phi = feature_map if feature_map is not None else (lambda t: F.elu(t) + 1)
    phi_q, phi_k = phi(q), phi(k)  # (..., T, d'), (..., S, d')
    for name, t, x in (("phi(q)", phi_q, q), ("phi(k)", phi_k, k)):
        if not isinstance(t, torch.Tensor) or t.shape[:-1] != x.shape[:-1] \
                or t.shape[-1] != phi_q.shape[-1]:
            raise ValueError(f"feature_map must map q {tuple(q.shape)} and k {tuple(k.shape)} to "
                             f"tensors that differ only in (the same) last dimension, got {name} "
                             f"{getattr(t, 'shape', type(t).__name__)}")
    if order == "left" or return_attention:
        a = phi_q @ phi_k.transpose(-2, -1)  # A = phi(Q) phi(K)^T: (..., T, S)
        allowed = merge_masks(mask, causal_mask(T, device=q.device) if is_causal else None)
        if allowed is not None:  # keep s <= t (causal) and the keys the mask allows
            a = a * allowed
        weights = a / _nonzero(a.sum(-1, keepdim=True) + eps)  # rows of A over A 1 (+ eps)
        if order == "left":
            out = weights @ v  # A V / (A 1 + eps)
            return (out, weights) if return_attention else out
    if mask is not None:  # a key mask (..., 1, S) or (S,): blocked keys leave both sums
        keep = mask[..., 0, :] if mask.dim() >= 2 else mask  # (..., S)
        phi_k = phi_k * keep.unsqueeze(-1).to(phi_k.dtype)
    if is_causal:  # running sums over s <= t: (..., T, d', d_v) and (..., T, d')
        kv = torch.einsum("...sd,...se->...sde", phi_k, v).cumsum(-3)  # sum_{s<=t} phi(k_s) v_s^T
        num = torch.einsum("...td,...tde->...te", phi_q, kv)  # (..., T, d_v)
        den = (phi_q * phi_k.cumsum(-2)).sum(-1, keepdim=True)  # phi(q_t)^T sum_{s<=t} phi(k_s)
    else:
        num = phi_q @ (phi_k.transpose(-2, -1) @ v)  # phi(Q) (phi(K)^T V): (..., T, d_v)
        den = phi_q @ phi_k.sum(-2).unsqueeze(-1)  # phi(Q) (phi(K)^T 1): (..., T, 1)
    out = num / _nonzero(den + eps)
    return (out, weights) if return_attention else out


def _nonzero(den: torch.Tensor) -> torch.Tensor:
    """The normaliser, with 1 where it is 0: a query that sees no key (all blocked, or a
    feature map that is 0 there, with ``eps=0``) gets zeros, never NaN (the kernel's rule)."""
    return den.masked_fill(den == 0, 1.0)


def attention_flops(n: int, d: int, method: str = "full") -> int:
    r"""Multiply-adds one head spends mixing ``n`` tokens of width ``d`` (projections excluded).

    ``"full"`` and ``"online"``: :math:`2n^2d` (:math:`QK^\top` and the weighted sum of V; the
    online softmax saves memory, not arithmetic); ``"linear"`` (right order):
    :math:`2nd^2 + nd` (:math:`\phi(K)^\top V`, :math:`\phi(Q)` times it, and the normaliser
    :math:`\phi(Q)\,z`); ``"separable"``: :math:`2nd` (the context vector and the gating).
    Softmax, exponentials and plain sums are not counted (a test checks the counts with
    :class:`torch.utils.flop_counter.FlopCounterMode`). Taught in: :ref:`chap-efficient-attention`.
    """
    checks.positive_int(n, "n"), checks.positive_int(d, "d")
    costs = {"full": 2 * n * n * d, "online": 2 * n * n * d, "linear": 2 * n * d * d + n * d,
             "separable": 2 * n * d}
    return costs[checks.one_of(method, "method", tuple(costs))]
