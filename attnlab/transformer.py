r"""Cross-attention and the Transformer block: encoder and decoder layers, a tiny encoder-decoder.

A Transformer layer wraps each sub-layer (attention, or the position-wise feed-forward network)
in a residual connection and a layer normalisation, in one of two places:

.. math::

    \text{post-norm:}\quad x \leftarrow \operatorname{LN}(x + F(x)) \qquad\qquad
    \text{pre-norm:}\quad x \leftarrow x + F(\operatorname{LN}(x))

An encoder layer has two sub-layers (self-attention, feed-forward); a decoder layer has three:
causal self-attention, **cross-attention** (queries from the decoder, keys and values from the
encoder's output, the *memory*) and feed-forward.

Every attention here is :class:`attnlab.attention.MultiHeadAttention`, so every softmax runs in
the book's one kernel. Another way of mixing the source plugs into the cross-attention's seam:
:class:`AdditiveAttention` (Bahdanau's scores) or :func:`summary_attention` (uniform weights:
every step reads the mean of the memory, the fixed-size summary of seq2seq before attention).

Masks follow the book (True = may attend): ``key_mask`` ``(B, S)`` marks real source tokens;
``torch.nn.Transformer*Layer`` wants the inverse (True = padding).

Shape letters: B batch, S source length, T target length, D width, h heads, V vocabulary.

Taught in: :ref:`chap-cross-attention`.

References: Bahdanau, Cho, Bengio, 2014, arXiv:1409.0473; Luong, Pham, Manning, 2015,
arXiv:1508.04025; Vaswani et al., *Attention Is All You Need*, 2017, arXiv:1706.03762; Xiong et
al., *On Layer Normalization in the Transformer Architecture*, 2020, arXiv:2002.04745.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import checks
from attnlab.attention import MultiHeadAttention, SinusoidalPositionalEncoding, copy_torch_mha_
from attnlab.functional import (_check_qkv, additive_score, causal_mask, masked_softmax,
                                merge_masks, scaled_dot_product_attention)

__all__ = ["AdditiveAttention", "summary_attention", "FeedForward", "EncoderLayer",
           "DecoderLayer", "EncoderDecoder"]


# --- other ways to mix the source, for the attention seam ------------------------------------

def _check_seam(q, k, v, mask, dropout_p) -> None:
    """The checks of the book's kernel, for a function that plugs into the attention seam."""
    batch = _check_qkv(q, k, v)
    checks.probability(dropout_p, "dropout_p")
    if mask is not None:
        checks.mask_for(mask, (*batch, q.shape[-2], k.shape[-2]))


def _check_key_mask(mask, name: str, B: int, S: int) -> None:
    """A ``(B, S)`` mask of real keys (True = a real token), exactly that shape."""
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) != (B, S):
        raise ValueError(f"{name} must have shape (B, S) = {(B, S)}, got {tuple(mask.shape)}")
    checks.mask_for(mask, (B, S), name)


def _weighted_sum(scores, v, mask, dropout_p, is_causal, return_attention):
    """Softmax over the visible keys, then the weighted sum of the values."""
    if is_causal:
        mask = merge_masks(mask, causal_mask(*scores.shape[-2:], device=scores.device))
    weights = masked_softmax(scores, mask)  # (..., T, S)
    out = F.dropout(weights, p=dropout_p) @ v  # (..., T, d_v)
    return (out, weights) if return_attention else out


def summary_attention(q, k, v, mask=None, *, dropout_p=0.0, is_causal=False,
                      return_attention=False):
    r"""Uniform weights over the visible keys: every query reads the same mean of the values.

    A fixed-size summary of the source, the bottleneck of sequence-to-sequence models before
    attention (Sutskever et al. 2014 read the encoder's last state). Same signature as
    :func:`attnlab.functional.scaled_dot_product_attention`; ``q`` only sets the shape.
    """
    _check_seam(q, k, v, mask, dropout_p)
    scores = torch.zeros(*q.shape[:-1], k.shape[-2], dtype=q.dtype, device=q.device)  # (..., T, S)
    return _weighted_sum(scores, v, mask, dropout_p, is_causal, return_attention)


class AdditiveAttention(nn.Module):
    r"""Bahdanau's additive scores :math:`a(q, k) = w^\top \tanh(W_q q + W_k k)` in every head.

    A drop-in for the ``attention`` seam of :class:`MultiHeadAttention`; the three matrices are
    shared by the heads. Args: ``head_dim`` d, ``hidden_dim`` the width of the tanh layer
    (default d). Shape: q ``(B, h, T, d)``, k and v ``(B, h, S, d)`` -> ``(B, h, T, d)``.

    Reference: Bahdanau, Cho, Bengio, 2014, arXiv:1409.0473.
    """

    def __init__(self, head_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = head_dim if hidden_dim is None else hidden_dim
        self.head_dim = checks.positive_int(head_dim, "head_dim")
        checks.positive_int(hidden_dim, "hidden_dim")
        self.w_q = nn.Parameter(torch.randn(hidden_dim, head_dim) / head_dim ** 0.5)  # W_q
        self.w_k = nn.Parameter(torch.randn(hidden_dim, head_dim) / head_dim ** 0.5)  # W_k
        self.w_v = nn.Parameter(torch.randn(hidden_dim) / hidden_dim ** 0.5)  # w

    def forward(self, q, k, v, mask=None, *, dropout_p=0.0, is_causal=False,
                return_attention=False):
        _check_seam(q, k, v, mask, dropout_p)
        if q.shape[-1] != self.head_dim:
            raise ValueError(f"q and k must have width head_dim = {self.head_dim} in their last "
                             f"dimension, got q {tuple(q.shape)}, k {tuple(k.shape)}")
        scores = additive_score(q, k, self.w_q, self.w_k, self.w_v)  # (B, h, T, S)
        return _weighted_sum(scores, v, mask, dropout_p, is_causal, return_attention)


# --- the layers -------------------------------------------------------------------------------

class FeedForward(nn.Module):
    r"""The position-wise feed-forward network :math:`\max(0, xW_1 + b_1)W_2 + b_2`.

    The same two-layer MLP is applied to every position on its own. Args: ``embed_dim`` D,
    ``ff_dim`` the hidden width (default 4D), ``dropout`` after the activation.
    Shape: ``(B, L, D)`` -> ``(B, L, D)``.
    """

    def __init__(self, embed_dim: int, ff_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim")
        ff_dim = 4 * embed_dim if ff_dim is None else ff_dim
        checks.positive_int(ff_dim, "ff_dim")
        self.linear1 = nn.Linear(embed_dim, ff_dim)  # W_1, b_1
        self.linear2 = nn.Linear(ff_dim, embed_dim)  # W_2, b_2
        self.dropout = nn.Dropout(checks.probability(dropout, "dropout"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.sequence(x, "x", self.embed_dim)
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


def _pair(result):
    """``(y, weights)`` from an attention's result, with or without weights."""
    return result if isinstance(result, tuple) else (result, None)


class _Layer(nn.Module):
    """What encoder and decoder layers share: the residual-and-norm wrapper and the switches."""

    def _init(self, embed_dim, n_sublayers, ff_dim, dropout, norm_first, residual, norm, ffn):
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim")
        self.norm_first, self.residual = bool(norm_first), bool(residual)
        self.ff = FeedForward(embed_dim, ff_dim, dropout) if ffn else None
        make_norm = (lambda: nn.LayerNorm(embed_dim)) if norm else nn.Identity
        self.norms = nn.ModuleList(make_norm() for _ in range(n_sublayers - (not ffn)))
        self.dropout = nn.Dropout(checks.probability(dropout, "dropout"))

    def _sublayer(self, x, i, fn):
        """x + F(LN(x)) (pre-norm) or LN(x + F(x)) (post-norm); fn returns (F(x), weights)."""
        norm = self.norms[i]
        y, weights = fn(norm(x) if self.norm_first else x)
        y = self.dropout(y) + x if self.residual else self.dropout(y)
        return (y if self.norm_first else norm(y)), weights

    def _feed_forward(self, x):
        if self.ff is None:
            return x
        return self._sublayer(x, len(self.norms) - 1, lambda z: (self.ff(z), None))[0]

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}, residual={self.residual}"


class EncoderLayer(_Layer):
    r"""A Transformer encoder layer: self-attention, then the feed-forward network.

    Args:
        embed_dim: width D. ``num_heads``: heads h (must divide D).
        ff_dim: hidden width of the feed-forward network (default 4D).
        dropout: on the attention weights and after each sub-layer (training only).
        norm_first: pre-norm (True, Xiong et al. 2020) or post-norm (False, the original).
        residual, norm, ffn: switch off the residual connections, the layer norms or the
            feed-forward sub-layer (for ablations).
        attention: the self-attention's attention function (the seam of
            :class:`MultiHeadAttention`).

    Shape: x ``(B, S, D)`` -> ``(B, S, D)``; ``return_attention=True`` also returns the
    self-attention weights ``(B, h, S, S)``. ``key_mask`` ``(B, S)``: True = a real token.

    Reference: Vaswani et al., 2017, arXiv:1706.03762. Taught in: :ref:`chap-cross-attention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int | None = None,
                 dropout: float = 0.0, norm_first: bool = True, *, residual: bool = True,
                 norm: bool = True, ffn: bool = True,
                 attention: Callable = scaled_dot_product_attention):
        super().__init__()
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout,
                                            attention=attention)
        self._init(embed_dim, 2, ff_dim, dropout, norm_first, residual, norm, ffn)

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, return_attention: bool = False):
        checks.sequence(x, "x", self.embed_dim)
        x, weights = self._sublayer(x, 0, lambda z: _pair(self.self_attn(
            z, attn_mask=attn_mask, key_mask=key_mask, return_attention=return_attention)))
        x = self._feed_forward(x)
        return (x, weights) if return_attention else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> "EncoderLayer":
        """A copy of a batch-first ``nn.TransformerEncoderLayer`` (ReLU), weights included."""
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise TypeError(f"layer must be an nn.TransformerEncoderLayer, got {type(layer).__name__}")
        mha = layer.self_attn
        ours = cls(mha.embed_dim, mha.num_heads, layer.linear1.out_features, layer.dropout.p,
                   layer.norm_first)
        _copy_from_torch(ours.to(mha.out_proj.weight), layer, [(ours.self_attn, mha)],
                         [layer.norm1, layer.norm2])
        return ours


class DecoderLayer(_Layer):
    r"""A Transformer decoder layer: causal self-attention, cross-attention, feed-forward.

    Cross-attention takes its queries from the decoder's states ``x`` ``(B, T, D)`` and its keys
    and values from the encoder's output ``memory`` ``(B, S, D)``, so ``T`` and ``S`` may differ.

    Args: as :class:`EncoderLayer`, plus ``cross_attention``, the attention function of the
    cross-attention (e.g. :class:`AdditiveAttention`, :func:`summary_attention`).

    Forward: ``is_causal`` (default True) lets target step t see steps <= t only; ``key_mask``
    ``(B, T)`` marks real target tokens, ``memory_key_mask`` ``(B, S)`` real source tokens;
    ``attn_mask`` ``(T, T)`` and ``memory_mask`` ``(T, S)`` are further masks (True = may attend).

    Shape: -> ``(B, T, D)``; ``return_attention=True`` also returns
    ``{"self": (B, h, T, T), "cross": (B, h, T, S)}``.

    Reference: Vaswani et al., 2017, arXiv:1706.03762. Taught in: :ref:`chap-cross-attention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int | None = None,
                 dropout: float = 0.0, norm_first: bool = True, *, residual: bool = True,
                 norm: bool = True, ffn: bool = True,
                 cross_attention: Callable = scaled_dot_product_attention):
        super().__init__()
        checks.function(cross_attention, "cross_attention")
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout,
                                             attention=cross_attention)
        self._init(embed_dim, 3, ff_dim, dropout, norm_first, residual, norm, ffn)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, *, is_causal: bool = True,
                attn_mask: torch.Tensor | None = None, key_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None,
                memory_key_mask: torch.Tensor | None = None, return_attention: bool = False):
        checks.sequence(x, "x", self.embed_dim), checks.sequence(memory, "memory", self.embed_dim)
        if memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory must have the batch size of x ({x.shape[0]}), "
                             f"got shape {tuple(memory.shape)}")
        (B, T), S = x.shape[:2], memory.shape[1]
        if memory_key_mask is not None:
            _check_key_mask(memory_key_mask, "memory_key_mask", B, S)
        if memory_mask is not None:  # (T, S), (B, T, S) or (B, h, T, S), as MultiHeadAttention
            three = isinstance(memory_mask, torch.Tensor) and memory_mask.dim() == 3
            checks.mask_for(memory_mask, (B, T, S) if three else
                            (B, self.cross_attn.num_heads, T, S), "memory_mask")
        x, w_self = self._sublayer(x, 0, lambda z: _pair(self.self_attn(
            z, attn_mask=attn_mask, key_mask=key_mask, is_causal=is_causal,
            return_attention=return_attention)))
        x, w_cross = self._sublayer(x, 1, lambda z: _pair(self.cross_attn(  # Q: z; K, V: memory
            z, memory, memory, attn_mask=memory_mask, key_mask=memory_key_mask,
            return_attention=return_attention)))
        x = self._feed_forward(x)
        return (x, {"self": w_self, "cross": w_cross}) if return_attention else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> "DecoderLayer":
        """A copy of a batch-first ``nn.TransformerDecoderLayer`` (ReLU), weights included."""
        if not isinstance(layer, nn.TransformerDecoderLayer):
            raise TypeError(f"layer must be an nn.TransformerDecoderLayer, got {type(layer).__name__}")
        mha = layer.self_attn
        ours = cls(mha.embed_dim, mha.num_heads, layer.linear1.out_features, layer.dropout.p,
                   layer.norm_first)
        pairs = [(ours.self_attn, mha), (ours.cross_attn, layer.multihead_attn)]
        _copy_from_torch(ours.to(mha.out_proj.weight), layer, pairs,
                         [layer.norm1, layer.norm2, layer.norm3])
        return ours


def _copy_from_torch(ours: _Layer, layer: nn.Module, attentions, norms) -> None:
    if not isinstance(layer.activation, nn.ReLU) and layer.activation is not F.relu:
        raise ValueError("only ReLU feed-forward layers can be copied")
    for dst, mha in attentions:
        copy_torch_mha_(dst, mha)
    with torch.no_grad():
        for dst, src in [(ours.ff.linear1, layer.linear1), (ours.ff.linear2, layer.linear2),
                         *zip(ours.norms, norms)]:
            dst.weight.copy_(src.weight), dst.bias.copy_(src.bias)
            if isinstance(src, nn.LayerNorm):
                dst.eps = src.eps


# --- a tiny encoder-decoder -------------------------------------------------------------------

class EncoderDecoder(nn.Module):
    r"""A small Transformer encoder-decoder for token-to-token tasks (e.g. translation).

    Token embeddings plus sinusoidal positions; ``num_layers`` encoder layers and
    ``num_layers`` decoder layers; a final layer norm on each side when pre-norm; a linear
    read-out to the target vocabulary. The embeddings are *not* multiplied by :math:`\sqrt{D}`
    as in Vaswani et al.: ``nn.Embedding`` starts them at N(0, 1), already the scale of the
    positions' sines and cosines.

    Args:
        src_vocab, tgt_vocab: vocabulary sizes. ``embed_dim``, ``num_heads``, ``ff_dim``,
            ``dropout``, ``norm_first``, ``residual``, ``norm``, ``ffn``: as :class:`EncoderLayer`.
        num_layers: layers on each side.
        cross_attention: the cross-attention's attention function (the seam).
        max_len: longest source or target. ``pad_id``: the source's padding token, in
            ``[0, src_vocab)``.

    Forward: ``src`` ``(B, S)`` and the decoder's input ``tgt`` ``(B, T)`` (the target shifted
    right behind a start token), integer ids below ``src_vocab`` and ``tgt_vocab``, ``S, T <=
    max_len`` -> logits ``(B, T, V)``. ``src_key_mask`` ``(B, S)`` (True = a real token)
    defaults to ``src != pad_id`` in :meth:`forward` and :meth:`greedy_decode`; :meth:`encode`
    and :meth:`decode` mask nothing unless given one. With ``return_attention=True`` also a dict of lists, one entry per
    layer: ``"encoder"`` ``(B, h, S, S)``, ``"self"`` ``(B, h, T, T)``, ``"cross"`` ``(B, h, T, S)``.

    Taught in: :ref:`chap-cross-attention`.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, embed_dim: int = 32, num_heads: int = 2,
                 num_layers: int = 1, ff_dim: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, *, residual: bool = True, norm: bool = True,
                 ffn: bool = True, cross_attention: Callable = scaled_dot_product_attention,
                 max_len: int = 64, pad_id: int = 0):
        super().__init__()
        checks.positive_int(src_vocab, "src_vocab"), checks.positive_int(tgt_vocab, "tgt_vocab")
        checks.positive_int(num_layers, "num_layers"), checks.positive_int(embed_dim, "embed_dim")
        self.max_len = checks.positive_int(max_len, "max_len")
        if checks.non_negative_int(pad_id, "pad_id") >= src_vocab:
            raise ValueError(f"pad_id must be a token of the source, in [0, {src_vocab}), "
                             f"got {pad_id}")
        self.embed_dim, self.pad_id = embed_dim, pad_id
        self.src_embed = nn.Embedding(src_vocab, embed_dim)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_dim)
        self.pos = SinusoidalPositionalEncoding(embed_dim, max_len)
        options = dict(ff_dim=ff_dim, dropout=dropout, norm_first=norm_first, residual=residual,
                       norm=norm, ffn=ffn)
        self.encoder = nn.ModuleList(EncoderLayer(embed_dim, num_heads, **options)
                                     for _ in range(num_layers))
        self.decoder = nn.ModuleList(DecoderLayer(embed_dim, num_heads, **options,
                                                  cross_attention=cross_attention)
                                     for _ in range(num_layers))
        final = norm_first and norm
        self.encoder_norm = nn.LayerNorm(embed_dim) if final else nn.Identity()
        self.decoder_norm = nn.LayerNorm(embed_dim) if final else nn.Identity()
        self.readout = nn.Linear(embed_dim, tgt_vocab)

    def _tokens(self, tokens, name: str, table: nn.Embedding) -> torch.Tensor:
        """``tokens`` if they are ``(B, L)`` integer ids of ``table`` with ``L <= max_len``."""
        checks.ids(tokens, name, table.num_embeddings, (None, None), "(B, L)")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"{name} has {tokens.shape[1]} tokens, more than max_len="
                             f"{self.max_len}")
        return tokens

    def _key_mask(self, src_key_mask, B: int, S: int, pad_from=None):
        """The checked ``(B, S)`` source mask, or ``pad_from != pad_id`` when none is given."""
        if src_key_mask is None:
            return None if pad_from is None else pad_from != self.pad_id  # True = a real token
        _check_key_mask(src_key_mask, "src_key_mask", B, S)
        return src_key_mask

    def encode(self, src, src_key_mask=None, weights=None):
        """The memory ``(B, S, D)``; appends each layer's self-attention weights to ``weights``."""
        self._tokens(src, "src", self.src_embed)
        src_key_mask = self._key_mask(src_key_mask, *src.shape)
        if weights is not None and not isinstance(weights, list):
            raise TypeError(f"weights must be a list (or None), got {type(weights).__name__}")
        x = self.pos(self.src_embed(src))  # (B, S, D)
        for layer in self.encoder:
            x, w = _pair(layer(x, key_mask=src_key_mask, return_attention=weights is not None))
            if weights is not None:
                weights.append(w)
        return self.encoder_norm(x)

    def decode(self, tgt, memory, src_key_mask=None, *, is_causal=True, weights=None):
        """Logits ``(B, T, V)`` for the decoder input ``tgt`` given the memory ``(B, S, D)``;
        appends each layer's weights to ``weights["self"]`` and ``weights["cross"]``."""
        self._tokens(tgt, "tgt", self.tgt_embed)
        checks.sequence(memory, "memory", self.embed_dim)
        if memory.shape[0] != tgt.shape[0]:
            raise ValueError(f"tgt and memory must have the same batch size B, got tgt "
                             f"{tuple(tgt.shape)} and memory {tuple(memory.shape)}")
        src_key_mask = self._key_mask(src_key_mask, *memory.shape[:2])
        if weights is not None and not (isinstance(weights, dict)
                                        and all(isinstance(weights.get(k), list)
                                                for k in ("self", "cross"))):
            raise TypeError("weights must be a dict {'self': [], 'cross': []} of lists (or None), "
                            f"got {weights!r:.60}")
        x = self.pos(self.tgt_embed(tgt))  # (B, T, D)
        for layer in self.decoder:
            x, w = _pair(layer(x, memory, memory_key_mask=src_key_mask, is_causal=is_causal,
                               return_attention=weights is not None))
            if weights is not None:
                weights["self"].append(w["self"]), weights["cross"].append(w["cross"])
        return self.readout(self.decoder_norm(x))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, *,
                src_key_mask: torch.Tensor | None = None, is_causal: bool = True,
                return_attention: bool = False):
        self._tokens(src, "src", self.src_embed), self._tokens(tgt, "tgt", self.tgt_embed)
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(f"src and tgt must have the same batch size B, got src "
                             f"{tuple(src.shape)} and tgt {tuple(tgt.shape)}")
        src_key_mask = self._key_mask(src_key_mask, *src.shape, pad_from=src)
        weights = {"encoder": [], "self": [], "cross": []} if return_attention else None
        memory = self.encode(src, src_key_mask, weights and weights["encoder"])
        logits = self.decode(tgt, memory, src_key_mask, is_causal=is_causal, weights=weights)
        return (logits, weights) if return_attention else logits

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, start: torch.Tensor | int, steps: int, *,
                      src_key_mask: torch.Tensor | None = None):
        """Decode ``steps`` tokens one at a time, each step feeding back the argmax.

        ``start`` is the start token (an int, or ``(B, k)`` tokens to continue from); the
        decoder reads up to ``k + steps - 1`` tokens, at most ``max_len``. Returns the generated tokens ``(B, steps)`` and the
        last step's cross-attention weights of every layer, ``(B, h, steps, S)`` each (the full
        map, since every step is recomputed).
        """
        checks.positive_int(steps, "steps")
        self._tokens(src, "src", self.src_embed)
        src_key_mask = self._key_mask(src_key_mask, *src.shape, pad_from=src)
        if isinstance(start, torch.Tensor):
            out = self._tokens(start, "start", self.tgt_embed)
            if start.shape[0] != src.shape[0] or start.shape[1] == 0:
                raise ValueError(f"start must have shape (B, k) with the B of src "
                                 f"({src.shape[0]}) and k >= 1, got {tuple(start.shape)}")
        else:
            if checks.non_negative_int(start, "start") >= self.tgt_embed.num_embeddings:
                raise ValueError(f"start must lie in [0, {self.tgt_embed.num_embeddings}), "
                                 f"got {start}")
            out = torch.full((src.shape[0], 1), int(start), dtype=torch.long, device=src.device)
        k = out.shape[1]
        if k + steps - 1 > self.max_len:
            raise ValueError(f"start ({k} tokens) and steps ({steps}) make the decoder read "
                             f"{k + steps - 1} tokens, more than max_len={self.max_len}")
        memory = self.encode(src, src_key_mask)
        for _ in range(steps):
            weights = {"self": [], "cross": []}
            logits = self.decode(out, memory, src_key_mask, weights=weights)  # (B, t, V)
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return out[:, k:], [w[:, :, -steps:] for w in weights["cross"]]
