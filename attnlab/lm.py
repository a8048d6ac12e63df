r"""A tiny causal language model: the Transformer decoder of today's language models, small.

.. math::

    h^{(0)} = E[x] \;(+\, P), \qquad
    h^{(\ell)} = u + \operatorname{MLP}(\operatorname{LN}(u)), \;
    u = h^{(\ell-1)} + \operatorname{MHA}(\operatorname{LN}(h^{(\ell-1)})), \qquad
    \text{logits} = \operatorname{LN}(h^{(L)})\, W_U

Pre-norm blocks of causal :class:`attnlab.attention.MultiHeadAttention` (so every softmax runs in
the book's one kernel) and, unless ``mlp=False`` (an *attention-only* model), a two-layer MLP.
Where positions come from is one argument:

- ``"learned"`` or ``"sinusoidal"``: vectors added to the token embeddings (absolute);
- ``"rope"``: rotary embeddings of queries and keys (:class:`attnlab.positions.RotaryAttention`);
- ``"alibi"``: linear biases on the scores (:class:`attnlab.positions.ALiBiAttention`);
- ``"none"``: nothing but the causal mask (NoPE).

:meth:`TinyLM.forward` takes a list of :class:`attnlab.attention.KVCache` (one per layer) to
decode step by step, and ``head_mask`` ``(L, h)`` to remove heads (ablation);
:meth:`TinyLM.generate` decodes greedily or by sampling, with an optional window and sinks.
``sink_logit=True`` gives every head a learnable sink logit (:class:`SinkLogit`), a place for
the softmax's weight that is not a token.

Shapes: ids ``(B, T)`` -> logits ``(B, T, V)``; with ``return_attention=True`` also a list of L
weight tensors ``(B, h, T, S)``.

References: Radford et al., *Language Models are Unsupervised Multitask Learners*, 2019 (GPT-2's
pre-norm decoder); Xiong et al., *On Layer Normalization in the Transformer Architecture*, 2020,
arXiv:2002.04745; Elhage et al., *A Mathematical Framework for Transformer Circuits*, 2021
(attention-only models).
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab import checks
from attnlab.attention import (KVCache, LearnedPositionalEncoding, MultiHeadAttention,
                               SinusoidalPositionalEncoding)
from attnlab.functional import causal_mask, merge_masks, scaled_dot_product_attention
from attnlab.positions import ALiBiAttention, RotaryAttention

__all__ = ["TinyLM", "POSITIONS", "SinkLogit"]

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")


class SinkLogit(nn.Module):
    r"""Attention with a learnable *sink logit* per head: a place for the softmax's mass.

    .. math::

        w_{ts} = \frac{e^{s_{ts}}}{e^{b_h} + \sum_{s'} e^{s_{ts'}}}, \qquad
        \text{out}_t = \sum_s w_{ts} v_s

    Each head gets one extra key whose score is a learned number :math:`b_h` and whose value is
    zero, so a head's weights over the real tokens may sum to less than one: it can read nothing
    without parking its mass on a real token (an *attention sink*). Implemented as a zero key
    and value in front of the others and a float mask, through the one kernel (``attention``,
    e.g. :class:`attnlab.positions.RotaryAttention`: a zero key stays zero under rotation, and
    the offsets between real tokens do not change). The weights returned leave the sink out;
    ``1 - weights.sum(-1)`` is what went to it.

    Pass an instance as ``MultiHeadAttention(..., attention=SinkLogit(h))``, one per layer.

    Args:
        num_heads: h, one logit each (initialised to 0).
        attention: the kernel to wrap (default the book's scaled dot-product attention).

    Shape: as :func:`attnlab.functional.scaled_dot_product_attention`, ``q`` ``(B, h, T, d)``.

    Reference: Xiao et al., *Efficient Streaming Language Models with Attention Sinks*, 2023,
    arXiv:2309.17453 (a learnable sink token, their Section 3.3); Miller, *Attention Is Off By
    One*, 2023 (a fixed extra logit). Taught in :ref:`chap-generating`.
    """

    def __init__(self, num_heads: int, attention=scaled_dot_product_attention):
        super().__init__()
        self.num_heads = checks.positive_int(num_heads, "num_heads")
        if not callable(attention) or isinstance(attention, ALiBiAttention):
            raise TypeError("attention must be a kernel like scaled_dot_product_attention or "
                            "RotaryAttention (ALiBi would bias the sink by its distance)")
        self.attention = attention
        self.logit = nn.Parameter(torch.zeros(num_heads))  # b_h

    def forward(self, q, k, v, mask=None, *, dropout_p: float = 0.0, is_causal: bool = False,
                return_attention: bool = False):
        checks.tensor(q, "q")
        if q.dim() != 4 or q.shape[1] != self.num_heads:
            raise ValueError(f"q must have shape (B, h, T, d) with h = {self.num_heads}, "
                             f"got {tuple(q.shape)}")
        B, h, T, _ = q.shape
        S = k.shape[-2]
        if is_causal:
            mask = merge_masks(mask, causal_mask(T, S, device=q.device))
        real = merge_masks(mask, torch.zeros(T, S, dtype=q.dtype, device=q.device))  # float
        real = real.to(q.dtype).expand(B, h, T, S)
        sink = self.logit.to(q.dtype).view(1, h, 1, 1).expand(B, h, T, 1)
        zero_k, zero_v = k.new_zeros(B, h, 1, k.shape[-1]), v.new_zeros(B, h, 1, v.shape[-1])
        out = self.attention(q, torch.cat((zero_k, k), -2), torch.cat((zero_v, v), -2),
                             torch.cat((sink, real), -1), dropout_p=dropout_p,
                             return_attention=return_attention)
        return (out[0], out[1][..., 1:]) if return_attention else out

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class _Block(nn.Module):
    def __init__(self, embed_dim, num_heads, num_kv_heads, attention, mlp, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, attention=attention,
                                       num_kv_heads=num_kv_heads)
        self.mlp = None
        if mlp:
            self.ln2 = nn.LayerNorm(embed_dim)
            self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(),
                                     nn.Linear(4 * embed_dim, embed_dim))

    def forward(self, x, cache, head_mask, return_attention):
        a = self.ln1(x)
        kw = dict(head_mask=head_mask, return_attention=return_attention)
        out = self.attn(a, cache=cache, **kw) if cache is not None else \
            self.attn(a, is_causal=True, **kw)
        out, weights = out if return_attention else (out, None)
        x = x + out
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return x, weights


class TinyLM(nn.Module):
    r"""A small causal Transformer language model (see the module docstring).

    Args:
        vocab_size: V, the number of token ids.
        embed_dim: width D.
        num_heads: h per layer.
        num_layers: L.
        num_kv_heads: key/value heads per layer (default h; 1 = multi-query).
        positions: one of :data:`POSITIONS`.
        max_len: the longest sequence ``"learned"`` and ``"sinusoidal"`` positions cover.
        mlp: False for an attention-only model.
        dropout: on the attention weights.
        sink_logit: give every head a learnable sink logit (:class:`SinkLogit`; not with
            ``"alibi"``).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, num_heads: int = 4,
                 num_layers: int = 2, *, num_kv_heads: int | None = None,
                 positions: str = "rope", max_len: int = 512, mlp: bool = True,
                 dropout: float = 0.0, sink_logit: bool = False):
        super().__init__()
        self.vocab_size = checks.positive_int(vocab_size, "vocab_size")
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim")
        self.num_heads = checks.positive_int(num_heads, "num_heads")
        self.num_layers = checks.positive_int(num_layers, "num_layers")
        self.positions = checks.one_of(positions, "positions", POSITIONS)
        self.max_len = checks.positive_int(max_len, "max_len")
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.pos = None  # absolute positions, added to the tokens
        if positions == "learned":
            self.pos = LearnedPositionalEncoding(embed_dim, max_len)
        elif positions == "sinusoidal":
            self.pos = SinusoidalPositionalEncoding(embed_dim, max_len)
        attention = scaled_dot_product_attention  # positions inside attention, or none at all
        if positions == "rope":
            attention = RotaryAttention()
        elif positions == "alibi":
            attention = ALiBiAttention(num_heads)
        if not isinstance(sink_logit, bool):
            raise TypeError(f"sink_logit must be True or False, got {sink_logit!r}")
        if sink_logit and positions == "alibi":
            raise ValueError("sink_logit does not go with positions='alibi' (ALiBi would bias "
                             "the sink by its distance)")
        self.sink_logit = sink_logit
        self.blocks = nn.ModuleList(
            _Block(embed_dim, num_heads, num_kv_heads,
                   SinkLogit(num_heads, attention) if sink_logit else attention, bool(mlp),
                   dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.unembed = nn.Linear(embed_dim, vocab_size, bias=False)  # W_U

    def new_caches(self, window: int | None = None, sinks: int = 0) -> list[KVCache]:
        """One empty :class:`KVCache` per layer."""
        return [KVCache(window, sinks) for _ in self.blocks]

    def forward(self, ids: torch.Tensor, *, caches: list[KVCache] | None = None,
                head_mask: torch.Tensor | None = None, return_attention: bool = False):
        ids = checks.ids(ids, "ids", self.vocab_size)
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must have shape (B, T) with T >= 1, got {tuple(ids.shape)}")
        if caches is not None and (not isinstance(caches, (list, tuple))
                                   or len(caches) != self.num_layers):
            raise ValueError(f"caches must be a list of {self.num_layers} KVCache, one per "
                             "layer (model.new_caches())")
        if head_mask is not None:
            checks.tensor(head_mask, "head_mask")
            if head_mask.shape != (self.num_layers, self.num_heads):
                raise ValueError(f"head_mask must have shape (L, h) = "
                                 f"{(self.num_layers, self.num_heads)}, got {tuple(head_mask.shape)}")
        x = self.embed(ids)  # (B, T, D)
        if self.pos is not None:
            start = 0 if caches is None else caches[0].seen  # absolute position of ids[:, 0]
            if start + ids.shape[1] > self.max_len:
                raise ValueError(f"{self.positions} positions cover {self.max_len} tokens; "
                                 f"position {start + ids.shape[1] - 1} is beyond them")
            x = x + self.pos.pe[start:start + ids.shape[1]].to(x.dtype)
        weights = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, None if caches is None else caches[i],
                         None if head_mask is None else head_mask[i], return_attention)
            weights.append(w)
        logits = self.unembed(self.ln_f(x))  # (B, T, V)
        return (logits, weights) if return_attention else logits

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, steps: int, *, window: int | None = None,
                 sinks: int = 0, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``ids`` ``(B, T)`` by ``steps`` tokens with a cache per layer; greedy when
        ``temperature`` is 0, else sampled. Returns ``(B, T + steps)``."""
        steps = checks.non_negative_int(steps, "steps")
        temperature = checks.number(temperature, "temperature")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        caches = self.new_caches(window, sinks)
        out, logits = ids, self(ids, caches=caches)[:, -1]  # (B, V)
        for _ in range(steps):
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            out = torch.cat((out, nxt), dim=1)
            logits = self(nxt, caches=caches)[:, -1]
        return out
