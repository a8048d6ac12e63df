r"""Self-attention, multi-head attention and positional encodings.

.. math::

    \operatorname{SelfAttention}(X) = \operatorname{softmax}\!\left(
        \frac{(XW_Q)(XW_K)^\top}{\sqrt{d}}\right) XW_V

    \operatorname{MultiHead}(Q, K, V) = \operatorname{Concat}(\mathrm{head}_1, \dots,
        \mathrm{head}_h)\, W^O, \qquad
    \mathrm{head}_i = \operatorname{Attention}(QW_i^Q, KW_i^K, VW_i^V)

Everything is batch first: ``x`` is ``(B, T, D)``; attention weights are ``(B, h, T, S)`` for
:class:`MultiHeadAttention` and ``(B, T, S)`` for the single head of :class:`SelfAttention`.

Mask convention (the book's, as in :func:`torch.nn.functional.scaled_dot_product_attention`): a
boolean mask is **True where a query may attend to a key**, a float mask is added to the scores.
``torch.nn.MultiheadAttention`` uses the opposite boolean convention (True = blocked) for both its
``attn_mask`` and its ``key_padding_mask``: pass ``~mask`` to it (or ``~mask`` from it to us).
A query that may attend to no key gets weights of zero and an output of zero (before the output
projection), where ``nn.MultiheadAttention`` returns NaN.

Taught in: :ref:`chap-self-attention` (:class:`SelfAttention`, the positional encodings) and
:ref:`chap-multi-head-attention` (:class:`MultiHeadAttention`).

Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.functional import causal_mask, masked_softmax, scaled_dot_product_attention

__all__ = ["SelfAttention", "MultiHeadAttention", "SinusoidalPositionalEncoding",
           "LearnedPositionalEncoding"]


# --- input checks shared by both modules ----------------------------------------------------

def _check_input(name: str, x, width: int | None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point (float16/bfloat16/float32/float64), "
                        f"got dtype {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, length, width), got {tuple(x.shape)}")
    if width is not None and x.shape[-1] != width:
        raise ValueError(f"{name} must have width {width} in its last dimension, got {x.shape[-1]}")


def _check_mask_dtype(name: str, mask: torch.Tensor) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool (True = may attend) or floating point (added to "
                        f"the scores), got dtype {mask.dtype}")


def _merge(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Combine two masks: bool & bool stays bool; otherwise an additive float mask."""
    if a is None or b is None:
        return a if b is None else b
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    dtype = a.dtype if a.is_floating_point() else b.dtype
    to_float = lambda m: (torch.zeros(m.shape, dtype=dtype, device=m.device)  # noqa: E731
                          .masked_fill(~m, float("-inf")) if m.dtype == torch.bool else m.to(dtype))
    return to_float(a) + to_float(b)


def _add_positions(x: torch.Tensor, pe: torch.Tensor, embed_dim: int, max_len: int) -> torch.Tensor:
    """x + the first T rows of a (max_len, D) table of position vectors."""
    _check_input("x", x, embed_dim)
    if x.shape[1] > max_len:
        raise ValueError(f"sequence length {x.shape[1]} exceeds max_len={max_len}")
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
        ``(B, T, T)`` (one head, so no head dimension).

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
    Taught in: :ref:`chap-self-attention`.
    """

    def __init__(self, embed_dim: int, head_dim: int | None = None, bias: bool = False):
        super().__init__()
        head_dim = embed_dim if head_dim is None else head_dim
        for name, v in (("embed_dim", embed_dim), ("head_dim", head_dim)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.embed_dim, self.head_dim = embed_dim, head_dim
        self.w_q = nn.Linear(embed_dim, head_dim, bias=bias)  # W_Q
        self.w_k = nn.Linear(embed_dim, head_dim, bias=bias)  # W_K
        self.w_v = nn.Linear(embed_dim, head_dim, bias=bias)  # W_V

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        r"""The scaled scores :math:`QK^\top/\sqrt{d}`, ``(B, T, T)``, before any mask or softmax."""
        _check_input("x", x, self.embed_dim)
        q, k = self.w_q(x), self.w_k(x)  # (B, T, d) each
        return q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, T, T)

    def forward(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False, return_attention: bool = False):
        _check_input("x", x, self.embed_dim)
        if attn_mask is not None:
            _check_mask_dtype("attn_mask", attn_mask)
            B, T = x.shape[:2]
            try:
                torch.broadcast_shapes(attn_mask.shape, (B, T, T))
            except RuntimeError:
                raise ValueError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast "
                                 f"to (B, T, T) = {(B, T, T)}") from None
        q, k, v = self.w_q(x), self.w_k(x), self.w_v(x)  # (B, T, d) each
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

    Masks of ``forward``, in the book's convention (**True = may attend**):

    - ``attn_mask``: bool or float (added to the scores), shape ``(T, S)``, ``(B, T, S)`` or
      ``(B, h, T, S)`` (any size-1 dimension broadcasts);
    - ``key_padding_mask``: ``(B, S)``, bool True for real keys, False for padding (or float, added);
    - ``is_causal``: query t sees keys s <= t only (combined with the masks above).

    ``torch.nn.MultiheadAttention`` reads boolean masks the other way round (True = blocked) and
    its 3-D ``attn_mask`` is ``(B*h, T, S)``: give it ``~attn_mask`` and ``~key_padding_mask``.

    Shape:
        query ``(B, T, D)``, key ``(B, S, kdim)``, value ``(B, S, vdim)`` (key and value default
        to query: self-attention) -> ``(B, T, D)``; with ``return_attention=True`` also the
        per-head weights ``(B, h, T, S)``.

    Without weights requested the fused kernel runs
    (:func:`attnlab.functional.scaled_dot_product_attention`); with them, the explicit five lines
    in :meth:`forward` run. A test holds the two equal.

    Reference: Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762.
    Taught in: :ref:`chap-multi-head-attention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, kdim: int | None = None,
                 vdim: int | None = None, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        for name, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # [W_1^Q ... W_h^Q]
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)  # [W_1^K ... W_h^K]
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)  # [W_1^V ... W_h^V]
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, L, d)

    def _mask(self, attn_mask, key_padding_mask, B: int, T: int, S: int):
        """The combined mask, broadcastable to (B, h, T, S), or None."""
        mask = None
        if attn_mask is not None:
            _check_mask_dtype("attn_mask", attn_mask)
            if attn_mask.dim() == 3:  # (B, T, S): the same mask for every head
                attn_mask = attn_mask.unsqueeze(1)  # (B, 1, T, S)
            if attn_mask.dim() not in (2, 4):
                raise ValueError("attn_mask must have shape (T, S), (B, T, S) or (B, h, T, S), "
                                 f"got {tuple(attn_mask.shape)}")
            try:
                torch.broadcast_shapes(attn_mask.shape, (B, self.num_heads, T, S))
            except RuntimeError:
                raise ValueError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast "
                                 f"to (B, h, T, S) = {(B, self.num_heads, T, S)}") from None
            mask = attn_mask
        if key_padding_mask is not None:
            _check_mask_dtype("key_padding_mask", key_padding_mask)
            if tuple(key_padding_mask.shape) != (B, S):
                raise ValueError(f"key_padding_mask must have shape (B, S) = {(B, S)}, "
                                 f"got {tuple(key_padding_mask.shape)}")
            mask = _merge(mask, key_padding_mask[:, None, None, :])  # (B, 1, 1, S)
        return mask

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, *, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, is_causal: bool = False,
                return_attention: bool = False):
        key = query if key is None else key
        value = key if value is None else value
        _check_input("query", query, self.embed_dim)
        _check_input("key", key, self.kdim)
        _check_input("value", value, self.vdim)
        if not (query.dtype == key.dtype == value.dtype):
            raise TypeError(f"query, key and value must share a dtype, got {query.dtype}, "
                            f"{key.dtype}, {value.dtype}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError("key and value must have shape (B, S, .) with the same B and S, and B "
                             f"must match query's: got query {tuple(query.shape)}, key "
                             f"{tuple(key.shape)}, value {tuple(value.shape)}")
        B, T, S = query.shape[0], query.shape[1], key.shape[1]
        mask = self._mask(attn_mask, key_padding_mask, B, T, S)
        q = self._split(self.q_proj(query))  # (B, h, T, d)
        k = self._split(self.k_proj(key))  # (B, h, S, d)
        v = self._split(self.v_proj(value))  # (B, h, S, d)
        p = self.dropout if self.training else 0.0

        if not return_attention:  # fused kernel
            out = scaled_dot_product_attention(q, k, v, mask, dropout_p=p, is_causal=is_causal)
            weights = None
        else:  # explicit path: the same computation, five lines
            if is_causal:
                mask = _merge(mask, causal_mask(T, S, device=q.device))  # (T, S) True = s <= t
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, T, S)
            weights = masked_softmax(scores, mask)  # (B, h, T, S); rows sum to 1 (or are all 0)
            out = F.dropout(weights, p) @ v  # (B, h, T, d)

        out = out.transpose(1, 2).reshape(B, T, self.embed_dim)  # concatenate heads: (B, T, D)
        out = self.out_proj(out)  # W^O
        return (out, weights) if return_attention else out

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
                f"kdim={self.kdim}, vdim={self.vdim}, dropout={self.dropout}")


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
        if not isinstance(embed_dim, int) or embed_dim < 2 or embed_dim % 2:
            raise ValueError(f"embed_dim must be a positive even int, got {embed_dim!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int, got {max_len!r}")
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
        for name, v in (("embed_dim", embed_dim), ("max_len", max_len)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.embed_dim, self.max_len = embed_dim, max_len
        self.pe = nn.Parameter(torch.randn(max_len, embed_dim) * 0.02)  # (max_len, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_positions(x, self.pe, self.embed_dim, self.max_len)
