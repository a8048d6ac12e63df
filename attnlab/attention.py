r"""Self-attention, multi-head attention and positional encodings.

.. math::

    \operatorname{SelfAttention}(X) = \operatorname{softmax}\!\left(
        \frac{(XW_Q)(XW_K)^\top}{\sqrt{d}}\right) XW_V

    \operatorname{MultiHead}(Q, K, V) = \operatorname{Concat}(\mathrm{head}_1, \dots,
        \mathrm{head}_h)\, W^O, \qquad
    \mathrm{head}_i = \operatorname{Attention}(QW_i^Q, KW_i^K, VW_i^V)

Everything is batch first: ``x`` is ``(B, T, D)``; attention weights are ``(B, h, T, S)`` for
:class:`MultiHeadAttention` and ``(B, T, S)`` for the single head of :class:`SelfAttention`.

Both modules compute their weights with :func:`attnlab.functional.scaled_dot_product_attention`,
the book's one attention kernel.

Mask convention (the book's, as in :func:`torch.nn.functional.scaled_dot_product_attention`): a
boolean mask is **True where a query may attend to a key**, a float mask is added to the scores.
``key_mask`` ``(B, S)`` is True for real keys and False for padding. ``torch.nn.MultiheadAttention``
reads boolean masks the other way round (True = blocked) for both its ``attn_mask`` and its
``key_padding_mask``: pass ``~attn_mask`` and ``~key_mask`` to it. A query that may attend to no
key gets weights of zero and an output of zero (before the output projection), where
``nn.MultiheadAttention`` returns NaN.

Taught in: :ref:`chap-self-attention` (:class:`SelfAttention`, the positional encodings) and
:ref:`chap-multi-head-attention` (:class:`MultiHeadAttention`).

Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from attnlab import checks
from attnlab.cache import KVCache
from attnlab.functional import merge_masks, scaled_dot_product_attention

__all__ = ["SelfAttention", "MultiHeadAttention", "KVCache", "copy_torch_mha_",
           "SinusoidalPositionalEncoding", "LearnedPositionalEncoding"]


def _add_positions(x: torch.Tensor, pe: torch.Tensor, embed_dim: int, max_len: int) -> torch.Tensor:
    """x + the first T rows of a (max_len, D) table of position vectors."""
    checks.sequence(x, "x", embed_dim)
    if x.shape[1] > max_len:
        raise ValueError(f"x has {x.shape[1]} positions, more than max_len={max_len}")
    return x + pe[: x.shape[1]].to(x.dtype)  # (B, T, D)


# --- single head ------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    r"""Single-head self-attention: queries, keys and values are three projections of one X.

    .. math::

        Q = XW_Q,\quad K = XW_K,\quad V = XW_V,\qquad
        Y = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d}} + M\right) V

    Args:
        embed_dim: width D of the input tokens.
        head_dim: width d of queries, keys and values (default: ``embed_dim``).
        bias: add a bias to the three projections (the paper's are plain matrices).

    Shape:
        x ``(B, T, D)`` -> y ``(B, T, d)``; with ``return_attention=True`` also the weights
        ``(B, T, T)`` (one head, so no head dimension). ``attn_mask`` broadcasts to ``(B, T, T)``.

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
    Taught in: :ref:`chap-self-attention`.
    """

    def __init__(self, embed_dim: int, head_dim: int | None = None, bias: bool = False):
        super().__init__()
        head_dim = embed_dim if head_dim is None else head_dim
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim")
        self.head_dim = checks.positive_int(head_dim, "head_dim")
        self.q_proj = nn.Linear(embed_dim, head_dim, bias=bias)  # W_Q
        self.k_proj = nn.Linear(embed_dim, head_dim, bias=bias)  # W_K
        self.v_proj = nn.Linear(embed_dim, head_dim, bias=bias)  # W_V

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        r"""The scaled scores :math:`QK^\top/\sqrt{d}`, ``(B, T, T)``, before mask or softmax."""
        checks.sequence(x, "x", self.embed_dim)
        q, k = self.q_proj(x), self.k_proj(x)  # (B, T, d) each
        return q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, T, T)

    def forward(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False, return_attention: bool = False):
        checks.sequence(x, "x", self.embed_dim)
        if attn_mask is not None:
            checks.mask_for(attn_mask, (x.shape[0], x.shape[1], x.shape[1]), "attn_mask")
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, T, d) each
        return scaled_dot_product_attention(q, k, v, attn_mask, is_causal=is_causal,
                                            return_attention=return_attention)


# --- several heads ----------------------------------------------------------------------------

class MultiHeadAttention(nn.Module):
    r"""Multi-head attention: h heads of width d = D/h attend in parallel; W^O mixes them.

    .. math::

        \mathrm{head}_i = \operatorname{softmax}\!\left(\frac{(QW_i^Q)(KW_i^K)^\top}{\sqrt{d}}
            + M\right) VW_i^V, \qquad
        \operatorname{MultiHead}(Q, K, V) = [\mathrm{head}_1; \dots; \mathrm{head}_h]\, W^O

    The h matrices :math:`W_i^Q` (each ``D x d``) are stored side by side as one ``D x D`` linear
    layer, ``q_proj``; splitting its output into h slices of width d gives the heads.

    Args:
        embed_dim: width D of the queries (and of the output).
        num_heads: number of heads h; must divide ``embed_dim``.
        kdim: width of the keys (default ``embed_dim``).
        vdim: width of the values (default ``embed_dim``).
        bias: add biases to the four projections.
        dropout: dropout probability on the attention weights (training only).
        attention: the attention function that mixes the heads' values, called as
            ``attention(q, k, v, mask, dropout_p=p, is_causal=c, return_attention=r)`` on
            ``(B, h, T, d)`` queries and ``(B, h, S, d)`` keys and values. The default is
            :func:`attnlab.functional.scaled_dot_product_attention`; another score, normaliser or
            feature map plugs in here as one function (the *seam* for the variants of later
            chapters), with no copy of this class.
        num_kv_heads: number of key/value heads (default ``num_heads``); each serves
            ``num_heads / num_kv_heads`` query heads: grouped-query attention, and multi-query
            attention with 1. ``k_proj`` and ``v_proj`` then have ``num_kv_heads * d`` outputs.

    Masks of ``forward``, in the book's convention (**True = may attend**):

    - ``attn_mask``: bool or float (added to the scores), shape ``(T, S)``, ``(B, T, S)`` or
      ``(B, h, T, S)`` (any size-1 dimension broadcasts);
    - ``key_mask``: ``(B, S)``, True for real keys, False for padding (or float, added);
    - ``is_causal``: query t sees keys s <= t only (combined with the masks above).

    ``head_mask`` ``(h,)`` or ``(B, h)`` multiplies each head's output before :math:`W^O`
    (1 keeps a head, 0 removes it: ablation, with no state kept in the module).

    Decoding with a cache: ``forward(x_new, cache=KVCache())`` appends the new tokens' keys and
    values (``num_kv_heads`` of them, the memory the cache costs) to the cache and lets the new
    queries attend causally to everything it holds (a window, if the cache has one): the same
    outputs as recomputing the whole sequence, at a cost that grows with T instead of T^2.

    ``torch.nn.MultiheadAttention`` reads boolean masks the other way round (True = blocked) and
    its 3-D ``attn_mask`` is ``(B*h, T, S)``: give it ``~attn_mask`` and ``~key_mask``.

    Shape:
        query ``(B, T, D)``, key ``(B, S, kdim)``, value ``(B, S, vdim)`` (key and value default
        to query: self-attention) -> ``(B, T, D)``; with ``return_attention=True`` also the
        per-head weights ``(B, h, T, S)`` (before dropout).

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762; Shazeer,
    *Fast Transformer Decoding: One Write-Head is All You Need*, 2019, arXiv:1911.02150
    (multi-query); Ainslie et al., *GQA*, 2023, arXiv:2305.13245 (grouped-query).
    Taught in: :ref:`chap-multi-head-attention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, kdim: int | None = None,
                 vdim: int | None = None, bias: bool = True, dropout: float = 0.0,
                 attention: Callable = scaled_dot_product_attention,
                 num_kv_heads: int | None = None):
        super().__init__()
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim")
        self.num_heads = checks.positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.dropout = checks.probability(dropout, "dropout")
        if not callable(attention):
            raise TypeError(f"attention must be a function like "
                            f"functional.scaled_dot_product_attention, got {type(attention).__name__}")
        self.num_kv_heads = (num_heads if num_kv_heads is None
                             else checks.positive_int(num_kv_heads, "num_kv_heads"))
        if num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads "
                             f"({self.num_kv_heads}): each key/value head serves a whole group")
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else checks.positive_int(kdim, "kdim")
        self.vdim = embed_dim if vdim is None else checks.positive_int(vdim, "vdim")
        self.attention = attention
        kv_width = self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # [W_1^Q ... W_h^Q]
        self.k_proj = nn.Linear(self.kdim, kv_width, bias=bias)  # [W_1^K ... W_hkv^K]
        self.v_proj = nn.Linear(self.vdim, kv_width, bias=bias)  # [W_1^V ... W_hkv^V]
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy of a batch-first ``torch.nn.MultiheadAttention``, weights included.

        The copy computes the same function (masks given in the book's convention).
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha must be a torch.nn.MultiheadAttention, got {type(mha).__name__}")
        # (torch's module has as many key/value heads as query heads: num_kv_heads stays h)
        ours = cls(mha.embed_dim, mha.num_heads, mha.kdim, mha.vdim,
                   bias=mha.in_proj_bias is not None, dropout=mha.dropout)
        return copy_torch_mha_(ours.to(mha.out_proj.weight), mha)

    def _split(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        B, L, _ = x.shape
        heads = self.num_heads if heads is None else heads
        return x.view(B, L, heads, self.head_dim).transpose(1, 2)  # (B, heads, L, d)

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h_kv, S, d) -> (B, h, S, d): each key/value head serves its group of query heads."""
        group = self.num_heads // self.num_kv_heads
        return x if group == 1 else x.repeat_interleave(group, dim=1)

    def scores(self, query: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor:
        r"""Each head's scaled scores :math:`QK^\top/\sqrt{d}`, ``(B, h, T, S)``, before any
        mask or softmax (what a figure that recomputes the softmax needs)."""
        key = query if key is None else key
        checks.sequence(query, "query", self.embed_dim), checks.sequence(key, "key", self.kdim)
        q = self._split(self.q_proj(query))  # (B, h, T, d)
        k = self._repeat_kv(self._split(self.k_proj(key), self.num_kv_heads))  # (B, h, S, d)
        return q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, T, S)

    def _mask(self, attn_mask, key_mask, B: int, T: int, S: int):
        """The combined mask, broadcastable to (B, h, T, S), or None."""
        mask = None
        if attn_mask is not None:
            if isinstance(attn_mask, torch.Tensor) and attn_mask.dim() not in (2, 3, 4):
                raise ValueError("attn_mask must have shape (T, S), (B, T, S) or (B, h, T, S), "
                                 f"got {tuple(attn_mask.shape)}")
            mask = attn_mask.unsqueeze(1) if attn_mask.dim() == 3 else attn_mask  # (B, 1, T, S)
            checks.mask_for(mask, (B, self.num_heads, T, S), "attn_mask")
        if key_mask is not None:
            checks.mask_for(key_mask, (B, S), "key_mask")
            if tuple(key_mask.shape) != (B, S):
                raise ValueError(f"key_mask must have shape (B, S) = {(B, S)}, "
                                 f"got {tuple(key_mask.shape)}")
            mask = merge_masks(mask, key_mask[:, None, None, :])  # (B, 1, 1, S)
        return mask

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, *, attn_mask: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None, is_causal: bool = False,
                return_attention: bool = False, cache: "KVCache | None" = None,
                head_mask: torch.Tensor | None = None):
        if cache is not None:
            return self._forward_cached(query, key, value, attn_mask, key_mask, cache,
                                        return_attention, head_mask)
        key = query if key is None else key
        value = key if value is None else value
        checks.sequence(query, "query", self.embed_dim)
        checks.sequence(key, "key", self.kdim)
        checks.sequence(value, "value", self.vdim)
        if not (query.dtype == key.dtype == value.dtype):
            raise TypeError(f"query, key and value must share a dtype, got {query.dtype}, "
                            f"{key.dtype}, {value.dtype}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError("key and value must have shape (B, S, .) with the same B and S, and B "
                             f"must match query's: got query {tuple(query.shape)}, key "
                             f"{tuple(key.shape)}, value {tuple(value.shape)}")
        B, T = query.shape[:2]
        mask = self._mask(attn_mask, key_mask, B, T, key.shape[1])
        q = self._split(self.q_proj(query))  # (B, h, T, d)
        k = self._split(self.k_proj(key), self.num_kv_heads)  # (B, h_kv, S, d)
        v = self._split(self.v_proj(value), self.num_kv_heads)  # (B, h_kv, S, d)
        return self._attend(q, k, v, mask, is_causal, return_attention, head_mask)

    def _attend(self, q, k, v, mask, is_causal, return_attention, head_mask=None):
        """The seam, then the heads concatenated and mixed by W^O."""
        B, _, T, _ = q.shape
        if head_mask is not None:
            checks.tensor(head_mask, "head_mask")
            if head_mask.shape not in ((self.num_heads,), (B, self.num_heads)):
                raise ValueError(f"head_mask must have shape (h,) or (B, h) = "
                                 f"{(B, self.num_heads)}, got {tuple(head_mask.shape)}")
        k, v = self._repeat_kv(k), self._repeat_kv(v)  # (B, h, S, d)
        p = self.dropout if self.training else 0.0
        result = self.attention(q, k, v, mask, dropout_p=p, is_causal=is_causal,
                                return_attention=return_attention)
        out, weights = result if return_attention else (result, None)  # (B, h, T, d)
        if head_mask is not None:  # 1 keeps a head's output, 0 removes it (ablation)
            out = out * head_mask.to(out.dtype).reshape(-1, self.num_heads, 1, 1)
        out = out.transpose(1, 2).reshape(B, T, self.embed_dim)  # concatenate heads: (B, T, D)
        out = self.out_proj(out)  # W^O
        return (out, weights) if return_attention else out

    def _forward_cached(self, x, key, value, attn_mask, key_mask, cache, return_attention,
                        head_mask):
        """Self-attention of the new tokens ``x`` (B, T, D) to every token the cache holds."""
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache must be an attnlab.attention.KVCache, got {type(cache).__name__}")
        if key is not None or value is not None or key_mask is not None:
            raise ValueError("with a cache, give only the new tokens (self-attention): key, value "
                             "and key_mask must be None")
        checks.sequence(x, "query", self.embed_dim)
        if x.shape[1] == 0:
            raise ValueError("query must hold at least one new token to decode")
        q = self._split(self.q_proj(x))  # (B, h, T, d)
        k = self._split(self.k_proj(x), self.num_kv_heads)  # (B, h_kv, T, d)
        v = self._split(self.v_proj(x), self.num_kv_heads)
        k, v, mask = cache.extend(k, v)  # everything held, (B, h_kv, S, d); mask (T, S)
        if attn_mask is not None:
            mask = merge_masks(mask, self._mask(attn_mask, None, x.shape[0], x.shape[1], k.shape[2]))
        return self._attend(q, k, v, mask, False, return_attention, head_mask)

    def extra_repr(self) -> str:
        kv = "" if self.num_kv_heads == self.num_heads else f", num_kv_heads={self.num_kv_heads}"
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{kv}, "
                f"head_dim={self.head_dim}, kdim={self.kdim}, vdim={self.vdim}, "
                f"dropout={self.dropout}")


def copy_torch_mha_(dst: nn.Module, mha: nn.MultiheadAttention) -> nn.Module:
    """Copy the weights of a batch-first ``nn.MultiheadAttention`` into ``dst``, in place.

    ``dst`` is any module with ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` linear layers
    of the same shapes (:class:`MultiHeadAttention`, :class:`attnlab.axial.AxisAttention`).
    """
    if not mha.batch_first or mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError("mha must be batch_first, without add_bias_kv or add_zero_attn")
    if mha._qkv_same_embed_dim:
        weights = mha.in_proj_weight.split(mha.embed_dim)
    else:
        weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
    biases = (mha.in_proj_bias.split(mha.embed_dim) if mha.in_proj_bias is not None
              else (None, None, None))
    pairs = [(dst.q_proj, weights[0], biases[0]), (dst.k_proj, weights[1], biases[1]),
             (dst.v_proj, weights[2], biases[2]), (dst.out_proj, mha.out_proj.weight, mha.out_proj.bias)]
    with torch.no_grad():
        for proj, w, b in pairs:
            if proj.weight.shape != w.shape or (proj.bias is None) != (b is None):
                raise ValueError(f"dst's projections do not match mha's: {tuple(proj.weight.shape)} "
                                 f"vs {tuple(w.shape)}, bias {proj.bias is not None} vs {b is not None}")
            proj.weight.copy_(w)
            if b is not None:
                proj.bias.copy_(b)
    return dst


# --- positions ----------------------------------------------------------------------------------

class SinusoidalPositionalEncoding(nn.Module):
    r"""Add fixed sines and cosines of geometrically spaced frequencies to the tokens.

    .. math::

        PE_{t, 2i} = \sin\!\left(t / b^{2i/D}\right), \qquad
        PE_{t, 2i+1} = \cos\!\left(t / b^{2i/D}\right), \qquad b = 10000

    Args:
        embed_dim: width D (even).
        max_len: the longest sequence it can encode.
        base: b, the longest wavelength is :math:`2\pi b`.

    Shape: x ``(B, T, D)`` -> ``(B, T, D)``, ``T <= max_len``. The table is the buffer ``pe``,
    ``(max_len, D)``.

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762, section 3.5.
    Taught in: :ref:`chap-self-attention`.
    """

    def __init__(self, embed_dim: int, max_len: int = 1024, base: float = 10000.0):
        super().__init__()
        checks.positive_int(embed_dim, "embed_dim"), checks.positive_int(max_len, "max_len")
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even (sines and cosines in pairs), got {embed_dim}")
        self.embed_dim, self.max_len = embed_dim, max_len
        t = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        freq = base ** (-torch.arange(0, embed_dim, 2, dtype=torch.float64) / embed_dim)  # (D/2,)
        pe = torch.zeros(max_len, embed_dim, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(t * freq)
        pe[:, 1::2] = torch.cos(t * freq)
        self.register_buffer("pe", pe.float(), persistent=False)  # (max_len, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_positions(x, self.pe, self.embed_dim, self.max_len)


class LearnedPositionalEncoding(nn.Module):
    r"""Add a learned vector per position: :math:`x_t + p_t`, with :math:`p_t` a parameter.

    Args:
        embed_dim: width D.
        max_len: number of positions it has vectors for.

    Shape: x ``(B, T, D)`` -> ``(B, T, D)``, ``T <= max_len``. The table is the parameter
    ``pe``, ``(max_len, D)``, initialised from N(0, 0.02^2) as in GPT-2 and BERT.

    Reference: Gehring et al., *Convolutional Sequence to Sequence Learning*, 2017,
    arXiv:1705.03122 (learned position embeddings).
    Taught in: :ref:`chap-self-attention`.
    """

    def __init__(self, embed_dim: int, max_len: int = 1024):
        super().__init__()
        checks.positive_int(embed_dim, "embed_dim"), checks.positive_int(max_len, "max_len")
        self.embed_dim, self.max_len = embed_dim, max_len
        self.pe = nn.Parameter(torch.randn(max_len, embed_dim) * 0.02)  # (max_len, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_positions(x, self.pe, self.embed_dim, self.max_len)
