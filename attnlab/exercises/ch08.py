"""Checkers for Chapter 8, cross-attention."""
from __future__ import annotations

import torch

from ._core import MULTI_HEAD, Feedback, as_number, check_build, checker, diagnose, fmt, generator

__all__ = ['check_cross_attention', 'check_kv_cache']


# --- Build: multi-head cross-attention -------------------------------------------------------

_CROSS_SHAPES = ((2, 3, 5, 8, 2), (1, 4, 4, 6, 1), (3, 1, 7, 12, 3), (2, 6, 2, 16, 4))


def _cross(x, memory, w_q, w_k, w_v, w_o, num_heads, key_mask, *, scale=True, heads=True,
           project=True):
    """Cross-attention from tensors, or one of its typical mistakes (the keywords)."""
    from attnlab.functional import scaled_dot_product_attention

    B, T, D = x.shape
    h = num_heads if heads else 1
    split = lambda t: t.view(B, t.shape[1], h, D // h).transpose(1, 2)  # (B, h, L, d)
    q, k, v = split(x @ w_q.T), split(memory @ w_k.T), split(memory @ w_v.T)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
    out = scaled_dot_product_attention(q, k, v, mask, scale=None if scale else 1.0)
    out = out.transpose(1, 2).reshape(B, T, D)  # heads concatenated
    return out @ w_o.T if project else out


def _cross_cases():
    """(case, args, expected): T != S, several heads, with and without padding, edge cases."""
    from attnlab.attention import MultiHeadAttention

    g = generator(0)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    shapes = [(*s, 1.0, "") for s in _CROSS_SHAPES]
    shapes += [(1, 1, 1, 4, 2, 1.0, ", one step and one source token"),
               (2, 3, 6, 8, 2, 30.0, ", inputs of size 30 (scores in the hundreds)")]
    for B, T, S, D, h, size, extra in shapes:
        ref = MultiHeadAttention(D, h, bias=False).double()
        weights = [p.weight.detach() for p in (ref.q_proj, ref.k_proj, ref.v_proj, ref.out_proj)]
        x, memory = size * rand(B, T, D), size * rand(B, S, D)
        key_mask = torch.ones(B, S, dtype=torch.bool)
        key_mask[0, S // 2 + 1:] = False  # sentence 0 is padded
        for mask in ((None, key_mask) if not extra else (key_mask,)):
            case = (f"B={B}, T={T}, S={S}, D={D}, heads={h}, "
                    + ("with padding" if mask is not None else "no padding") + extra)
            with torch.no_grad():
                expected = ref(x, memory, memory, key_mask=mask)
            yield case, (x, memory, *weights, h, mask), expected


@checker("ex-cross-build", forbid=MULTI_HEAD + ("attnlab.attention.MultiHeadAttention",),
         allow=("attnlab.functional",))
def check_cross_attention(fn) -> Feedback:
    r"""Exercise :ref:`ex-cross-build`: multi-head cross-attention from ``functional`` alone.

    ``fn(x, memory, w_q, w_k, w_v, w_o, num_heads, key_mask)`` gets decoder states ``x``
    ``(B, T, D)``, the encoder's output ``memory`` ``(B, S, D)``, four ``(D, D)`` weight matrices
    used as ``nn.Linear`` uses them (``x @ w_q.T``), the number of heads and ``key_mask``
    ``(B, S)`` (True = a real source token, or None), and returns ``(B, T, D)``. It is held
    against :class:`attnlab.attention.MultiHeadAttention` with the same weights (no biases) on
    several shapes with ``T != S``, with and without padding, one step over one source token,
    and large inputs.
    """
    mistakes = [
        (lambda x, m, wq, wk, wv, wo, h, mask: _cross(x, m, wq, wk, wv, wo, h, None),
         "The padding mask is ignored: block the keys where key_mask is False (pass it to "
         "scaled_dot_product_attention as a (B, 1, 1, S) mask)."),
        (lambda x, m, wq, wk, wv, wo, h, mask: _cross(x, m, wq, wk, wv, wo, h,
                                                      None if mask is None else ~mask),
         "The padding mask is inverted: key_mask is True for a real source token, and those "
         "are the keys to keep."),
        (lambda *a: _cross(*a, scale=False),
         "The scores are not scaled: divide by sqrt(d), d = D / num_heads (the kernel does "
         "this for you)."),
        (lambda *a: _cross(*a, heads=False),
         "One head of width D is computed: split q, k and v into num_heads heads of width "
         "D / num_heads."),
        (lambda *a: _cross(*a, project=False),
         "The output projection is missing: multiply the concatenated heads by w_o.T."),
    ]
    return check_build(fn, _cross_cases(), what="MultiHeadAttention(x, memory, memory)",
                       atol=1e-6, mistakes=mistakes, names=("output (B, T, D)",),
                       done="Queries from the decoder, keys and values from the encoder, "
                            "padding blocked.")


# --- Derive: what a key-value cache saves ----------------------------------------------------

def _decoder_scores(T: int, S: int) -> tuple[int, int]:
    """Scores the library's decoder lets through over T greedy steps, recomputed and cached.

    A one-layer, one-head :class:`attnlab.transformer.EncoderDecoder` decodes T steps; step t
    recomputes a ``(t, t)`` causal self-attention and a ``(t, S)`` cross-attention, and a cache
    would compute only their last rows. A score counts when its softmax weight is not zero.
    """
    from attnlab.transformer import EncoderDecoder

    model = EncoderDecoder(5, 5, embed_dim=4, num_heads=1, ff_dim=8).double().eval()
    src = torch.randint(1, 5, (1, S), generator=generator(0))
    recomputed = cached = 0
    with torch.no_grad():
        memory = model.encode(src)
        tgt = torch.ones(1, 1, dtype=torch.long)
        for _ in range(T):
            weights = {"self": [], "cross": []}
            model.decode(tgt, memory, weights=weights)
            seen = [(w[0, 0] > 0) for w in (weights["self"][0], weights["cross"][0])]
            recomputed += sum(int(s.sum()) for s in seen)  # every row, again
            cached += sum(int(s[-1].sum()) for s in seen)  # the new query's row only
            tgt = torch.cat([tgt, tgt[:, -1:]], dim=1)
    return recomputed, cached


@checker("ex-cross-cache")
def check_kv_cache(recomputed, cached, *, T: int = 10, S: int = 30) -> Feedback:
    r"""Exercise :ref:`ex-cross-cache`: the scores a decoder computes over T steps.

    Recomputing, step t (with t inputs) computes :math:`t(t+1)/2` causal self-attention scores
    and :math:`tS` cross-attention scores; with a key-value cache only the new query's row,
    :math:`t` and :math:`S`. Totals :math:`T(T+1)(T+2)/6 + S\,T(T+1)/2` and
    :math:`T(T+1)/2 + ST` (1,870 and 355 at T = 10, S = 30), counted here on the library's
    decoder (:func:`_decoder_scores`).
    """
    got = [as_number(recomputed, "recomputed"), as_number(cached, "cached")]
    for g in got:
        if isinstance(g, Feedback):
            return g
    want = _decoder_scores(T, S)
    tri = T * (T + 1) // 2
    self_full, self_tri, cross_all = T * (T + 1) * (2 * T + 1) // 6, tri * (T + 2) // 3, S * tri
    wrong_recomputed = [
        (self_full + cross_all, "the causal mask lets step t compute t(t+1)/2 self-attention "
                                "scores, not t^2: count only the scores it lets through."),
        (cross_all, "add the decoder's self-attention scores too."),
        (self_tri, "add the cross-attention scores too: t S at step t."),
        (want[1], "that is the count with the cache."),
        (self_tri - tri + S * (tri - T), "step t has t inputs, t = 1, ..., T (the first step "
                                         "reads the start token): do not start from 0."),
    ]
    wrong_cached = [
        (T * T + S * T, "with a cache, step t computes the one new row of the causal "
                        "self-attention: t scores, not T."),
        (tri + cross_all, "the memory's keys and values are the same at every step: with the "
                          "cache, step t computes only the new query's S cross-attention "
                          "scores."),
        (S * T, "add the decoder's self-attention scores too: t at step t."),
        (tri, "add the cross-attention scores too: S at step t."),
        (want[0], "that is the count without the cache."),
    ]
    lines = []
    for name, value, expected, wrong in (("recomputed", got[0], want[0], wrong_recomputed),
                                         ("cached", got[1], want[1], wrong_cached)):
        found = diagnose(value, expected, wrong)
        if found is not None:
            lines.append(f"{name}: expected a different value than {fmt(value)}. "
                         + (found or "Sum the scores step by step: at step t the decoder has "
                                     "t inputs and the source has S tokens."))
    if lines:
        return Feedback(False, " ".join(lines))
    return Feedback(True, f"{fmt(want[0])} scores recomputed against {fmt(want[1])} with the "
                          f"cache, {want[0] / want[1]:.1f} times fewer (T = {T}, S = {S}); the "
                          "ratio grows like T.")
