r"""Induction heads: the task that needs them, the scores that find them, the ablation that tests them.

An *induction head* completes a pattern it has seen earlier in the same context: at a token
``A`` it attends to the token that followed an earlier ``A`` and copies it,
``[A][B] ... [A] -> [B]``. In a two-layer attention-only model it is a circuit of two heads: a
*previous-token head* (layer 1) writes "the token before me" into every position; the induction
head (layer 2) matches its query (the current token) against those keys (*K-composition*) and
copies the value of the match.

.. math::

    \text{prefix matching:}\quad
    \frac{1}{|Q|} \sum_{t \in Q} \sum_{s < t,\; x_s = x_t} \alpha_{t, s+1},
    \qquad
    \text{previous token:}\quad \frac{1}{T-1} \sum_{t=1}^{T-1} \alpha_{t, t-1}

where :math:`\alpha` is one head's attention ``(T, S)`` and :math:`Q` the queries whose token
occurred before.

- :func:`repeated_segments`: random tokens that repeat with a period drawn per sequence (a fixed
  period would let one layer copy by position alone), and the mask of positions where copying
  the earlier occurrence's successor is right;
- :func:`next_token_loss`: the cross-entropy per position; :func:`unigram_loss`: the in-context
  unigram baseline (counts of the tokens seen so far);
- :func:`previous_token_score`, :func:`prefix_matching_score`: one number per head from the
  attention weights ``(B, h, T, S)``; :func:`copying_score`: does a head's OV circuit, read
  through the unembedding, raise the logit of the token it attends to?
- :func:`head_mask`, :func:`find_heads`: ablation masks and the automatic identification of the
  two heads of the circuit.

Shapes: ids ``(B, T)``; attention ``(B, h, T, S)`` with ``S = T`` (causal self-attention).

References: Elhage et al., *A Mathematical Framework for Transformer Circuits*, 2021
(transformer-circuits.pub); Olsson et al., *In-context Learning and Induction Heads*, 2022,
arXiv:2209.11895.

Taught in: :ref:`chap-induction`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab import checks

__all__ = ["repeated_segments", "next_token_loss", "unigram_loss", "previous_token_score",
           "prefix_matching_score", "copying_score", "head_mask", "find_heads",
           "attention_scores"]


def repeated_segments(batch_size: int, length: int, vocab_size: int, *,
                      period: tuple[int, int] | None = None,
                      generator: torch.Generator | None = None):
    r"""Random tokens that repeat with a period drawn per sequence: ``x_t = x_{t-p}`` for ``t >= p``.

    The first ``p`` tokens are drawn uniformly from ``[0, V)``; the rest repeat them. Before the
    repeat the next token cannot be predicted (the best loss is :math:`\log V`); from position
    ``p - 1`` on it is the successor of the current token's previous occurrence, one period back.
    The period varies from sequence to sequence, so no fixed offset finds it.

    Args:
        batch_size, length: B and T (``length >= 4``). vocab_size: V >= 2.
        period: ``(low, high)``, the period is drawn uniformly from ``low..high`` (inclusive);
            default ``(T // 4, T // 2)``. Needs ``2 <= low <= high < length``.
        generator: a seeded ``torch.Generator`` (default: the global stream).

    Returns:
        ``ids`` ``(B, T)`` long, and ``copy`` ``(B, T)`` bool: True at query positions ``t``
        whose next token ``x_{t+1}`` is the successor of the previous occurrence of ``x_t`` one
        period back (``p <= t < T - 1``): where an induction head can be right.
    """
    B = checks.positive_int(batch_size, "batch_size")
    T = checks.int_at_least(length, "length", 4)
    V = checks.int_at_least(vocab_size, "vocab_size", 2)
    low, high = (T // 4, T // 2) if period is None else checks.int_pair(period, "period")
    if not 2 <= low <= high < T:
        raise ValueError(f"period must be (low, high) with 2 <= low <= high < length = {T}, "
                         f"got {(low, high)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    p = torch.randint(low, high + 1, (B, 1), generator=generator)  # (B, 1) period per sequence
    fresh = torch.randint(0, V, (B, T), generator=generator)      # (B, T)
    t = torch.arange(T)                                            # (T,)
    ids = torch.gather(fresh, 1, (t % p))                          # x_t = x_{t mod p}
    copy = (t >= p) & (t < T - 1)                                  # (B, T)
    return ids, copy


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    r"""The cross-entropy of each next-token prediction, :math:`-\log p(x_{t+1} \mid x_{\le t})`.

    Args:
        logits: ``(B, T, V)`` from a causal model fed ``ids``. ids: ``(B, T)``.

    Returns:
        ``(B, T)``: position ``t`` holds the loss of predicting ``ids[:, t + 1]``; the last
        position (no next token) holds NaN, so that a mean over a mask never counts it silently.
    """
    checks.tensor(logits, "logits")
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    checks.ids(ids, "ids", logits.shape[-1], logits.shape[:2], "(B, T)")
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return F.pad(loss, (0, 1), value=math.nan)  # (B, T)


def unigram_loss(ids: torch.Tensor, vocab_size: int, smoothing: float = 1.0) -> torch.Tensor:
    r"""The loss of the in-context unigram model: predict from the counts of the tokens seen so far.

    .. math:: p(x_{t+1} = v) = \frac{c_t(v) + \lambda}{(t + 1) + \lambda V}

    with :math:`c_t(v)` the number of times ``v`` occurs in :math:`x_0 \dots x_t`. It knows which
    tokens this sequence uses, not their order: a baseline that needs no training. Small
    :math:`\lambda` trusts the counts, large :math:`\lambda` tends to the uniform :math:`\log V`.

    Args:
        ids: ``(B, T)`` token ids in ``[0, V)``. vocab_size: V. smoothing: :math:`\lambda > 0`.

    Returns:
        ``(B, T)`` as :func:`next_token_loss` (NaN at the last position).
    """
    V = checks.int_at_least(vocab_size, "vocab_size", 2)
    checks.ids(ids, "ids", V, (None, None), "(B, T)")
    lam = checks.positive(smoothing, "smoothing")
    counts = F.one_hot(ids, V).cumsum(1).double()                  # (B, T, V): c_t(v)
    t = torch.arange(1, ids.shape[1] + 1, dtype=torch.float64)[:, None]
    p = (counts + lam) / (t + lam * V)                             # (B, T, V)
    nxt = torch.gather(p[:, :-1], 2, ids[:, 1:, None])[..., 0]     # (B, T-1)
    return F.pad(-nxt.log(), (0, 1), value=math.nan).float()


def _attention(attn, ids=None):
    checks.tensor(attn, "attn")
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2] or attn.shape[-1] < 2:
        raise ValueError(f"attn must be self-attention weights (B, h, T, T) with T >= 2, "
                         f"got {tuple(attn.shape)}")
    if ids is not None:
        B, _, T, _ = attn.shape
        checks.ids(ids, "ids", 2**62, (B, T), "(B, T), matching attn")
    return attn


def previous_token_score(attn: torch.Tensor) -> torch.Tensor:
    r"""How much each head attends to the token just before the query, averaged over queries.

    .. math:: \frac{1}{B\,(T-1)} \sum_b \sum_{t=1}^{T-1} \alpha_{b, t, t-1}

    A head that always attends one step back scores 1; uniform causal attention scores
    :math:`\frac{1}{T-1}\sum_{t=1}^{T-1} \frac{1}{t+1}`.

    Args:
        attn: ``(B, h, T, T)`` attention weights (rows sum to 1).

    Returns:
        ``(h,)``. Reference: Olsson et al., 2022, arXiv:2209.11895.
    """
    attn = _attention(attn)
    return attn.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))  # (h,)


def prefix_matching_score(attn: torch.Tensor, ids: torch.Tensor,
                          queries: torch.Tensor | None = None) -> torch.Tensor:
    r"""How much each head attends to the *successors* of earlier occurrences of the query's token.

    .. math::

        \frac{1}{|Q|} \sum_{(b, t) \in Q} \;\sum_{s < t,\; x_{b,s} = x_{b,t}} \alpha_{b, t, s+1}

    :math:`Q` holds the queries whose token occurred before (and, if given, that ``queries``
    allows). An induction head scores near 1; a previous-token head scores about 0 on random
    tokens.

    Args:
        attn: ``(B, h, T, T)`` attention weights. ids: ``(B, T)`` the tokens they were computed on.
        queries: optional ``(B, T)`` bool, the query positions to average over (e.g. the
            ``copy`` mask of :func:`repeated_segments`).

    Returns:
        ``(h,)``; NaN if no query qualifies. Reference: Olsson et al., 2022, arXiv:2209.11895.
    """
    attn = _attention(attn, ids)
    B, _, T, _ = attn.shape
    same = ids[:, :, None] == ids[:, None, :]                       # (B, T, S): x_t == x_s
    earlier = torch.ones(T, T, dtype=torch.bool).tril(-1)           # s < t
    match = same & earlier                                          # earlier occurrences
    target = F.pad(match, (1, 0))[..., :T]                          # successors: s + 1
    has = match.any(-1)                                             # (B, T) the token occurred
    if queries is not None:
        has = has & checks.bool_mask(queries, "queries", (B, T))
    per_query = (attn * target[:, None].to(attn.dtype)).sum(-1)     # (B, h, T)
    return (per_query * has[:, None]).sum(dim=(0, 2)) / has.sum()   # (h,)


def copying_score(model, layer: int) -> torch.Tensor:
    r"""The fraction of tokens that each head's OV circuit, read through the unembedding, copies.

    The full OV circuit of head ``i`` maps a token's embedding, as the head would read it, to the
    logits its output adds: :math:`M_i = \operatorname{LN}(W_E)\, W_V^i W_O^i\, \Gamma\, W_U`
    (``(V, V)``; :math:`\Gamma` the final LayerNorm's centring and gain, the normalising scale
    left out). A head *copies* token ``v`` when ``v``'s own logit is the largest in row ``v``.
    A head that copies every token scores 1; a random circuit scores about :math:`1/V`.

    Args:
        model: an :class:`attnlab.lm.TinyLM` with learned or sinusoidal positions (or none).
        layer: the layer whose heads are scored, ``0 <= layer < L``.

    Returns:
        ``(h,)``. Reference: Elhage et al., *A Mathematical Framework for Transformer
        Circuits*, 2021 (the OV circuit and its copying eigenvalues).
    """
    layer = checks.non_negative_int(layer, "layer")
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(model, "unembed"):
        raise TypeError(f"model must be an attnlab.lm.TinyLM, got {type(model).__name__}")
    if layer >= len(blocks):
        raise ValueError(f"layer must be in [0, {len(blocks)}), got {layer}")
    block = blocks[layer]
    mha, h = block.attn, model.num_heads
    d = mha.head_dim
    with torch.no_grad():
        x = block.ln1(model.embed.weight)                           # (V, D): the token as read
        v = (x @ mha.v_proj.weight.T).view(-1, h, d)                # (V, h, d)
        w_o = mha.out_proj.weight.T.reshape(h, d, -1)               # (h, d, D)
        out = torch.einsum("vhd,hdD->hvD", v, w_o)                  # (h, V, D) each head's write
        out = (out - out.mean(-1, keepdim=True)) * model.ln_f.weight  # centring and gain
        logits = out @ model.unembed.weight.T                       # (h, V, V)
    own = torch.arange(logits.shape[1])
    return (logits.argmax(-1) == own).float().mean(-1)              # (h,)


def head_mask(num_layers: int, num_heads: int, off=()) -> torch.Tensor:
    r"""A ``(L, h)`` mask of ones with zeros at the heads in ``off``: pass it to
    :meth:`attnlab.lm.TinyLM.forward` as ``head_mask`` to remove those heads' outputs (zero
    ablation). Nothing is stored in the model: the next call without the mask is the full model.

    Args:
        num_layers, num_heads: L and h. off: ``(layer, head)`` pairs.
    """
    L = checks.positive_int(num_layers, "num_layers")
    h = checks.positive_int(num_heads, "num_heads")
    mask = torch.ones(L, h)
    for pair in off:
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise TypeError(f"off must hold (layer, head) pairs, got {pair!r:.40}")
        layer = checks.non_negative_int(pair[0], "off's layer")
        head = checks.non_negative_int(pair[1], "off's head")
        if not (layer < L and head < h):
            raise ValueError(f"off must hold (layer, head) pairs with layer < {L} and head < "
                             f"{h}, got {tuple(pair)}")
        mask[layer, head] = 0.0
    return mask


def find_heads(previous: torch.Tensor, induction: torch.Tensor) -> dict:
    r"""Name the two heads of the circuit from their scores.

    The *previous-token head* is the head with the largest previous-token score in any layer but
    the last; the *induction head* is the head with the largest prefix-matching score in a layer
    after it (it needs the previous-token head's output to form its keys).

    Args:
        previous, induction: ``(L, h)`` scores, e.g. stacked :func:`previous_token_score` and
            :func:`prefix_matching_score` per layer; ``L >= 2``.

    Returns:
        ``{"previous_token": (layer, head), "induction": (layer, head)}``.
    """
    checks.tensor(previous, "previous"), checks.tensor(induction, "induction")
    if previous.dim() != 2 or previous.shape[0] < 2 or previous.shape != induction.shape:
        raise ValueError(f"previous and induction must both have shape (L, h) with L >= 2, got "
                         f"{tuple(previous.shape)} and {tuple(induction.shape)}")
    L, h = previous.shape
    i = int(previous[:-1].reshape(-1).argmax())
    prev = (i // h, i % h)
    j = int(induction[prev[0] + 1:].reshape(-1).argmax())
    return {"previous_token": prev, "induction": (prev[0] + 1 + j // h, j % h)}


def attention_scores(model, ids: torch.Tensor) -> list[torch.Tensor]:
    r"""Every head's scores :math:`q_t^\top k_s / \sqrt d` before the mask and the softmax, per layer.

    What a figure that recomputes the softmax (with another temperature, with or without the
    causal mask) needs: :meth:`attnlab.lm.TinyLM.forward` returns the weights only. The input of
    each layer's attention is caught with a forward hook (removed before returning), and the
    layer's query and key projections, rotated when the model uses RoPE, give the scores.

    Args:
        model: an :class:`attnlab.lm.TinyLM` with ``"learned"``, ``"sinusoidal"``, ``"rope"`` or
            ``"none"`` positions. ids: ``(B, T)``.

    Returns:
        a list of L tensors ``(B, h, T, T)``; ``softmax`` of each, causally masked, gives the
        weights the model uses.
    """
    from attnlab.positions import RotaryAttention, apply_rope

    if getattr(model, "positions", None) not in ("learned", "sinusoidal", "rope", "none"):
        raise TypeError("model must be an attnlab.lm.TinyLM without ALiBi (its biases are not "
                        "scores of q and k)")
    inputs, hooks = [], [b.attn.register_forward_hook(lambda m, a, out: inputs.append(a[0]))
                         for b in model.blocks]
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    scores = []
    with torch.no_grad():
        for block, a in zip(model.blocks, inputs):
            mha = block.attn
            q = mha._split(mha.q_proj(a))                                      # (B, h, T, d)
            k = mha._repeat_kv(mha._split(mha.k_proj(a), mha.num_kv_heads))    # (B, h, T, d)
            if isinstance(mha.attention, RotaryAttention):
                rope = dict(base=mha.attention.base, scale=mha.attention.scale,
                            interleaved=mha.attention.interleaved)
                q, k = apply_rope(q, **rope), apply_rope(k, **rope)
            scores.append(q @ k.transpose(-2, -1) / math.sqrt(mha.head_dim))  # (B, h, T, T)
    return scores
