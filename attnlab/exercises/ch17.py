"""Checkers for Chapter 17, attention while generating: the cache's size, the length at which it
stops fitting, and grouped-query attention from tensors."""
from __future__ import annotations

import math

import torch

from ._core import (ATTENTION, MULTI_HEAD, Feedback, check_build, checker, diagnose, fmt,
                    formula_values, fresh_points, generator)

__all__ = ["check_cache_bytes", "check_break_even", "check_gqa"]


# --- Derive: the size of the cache -------------------------------------------------------------

def _held_bytes(layers: int, kv_heads: int, head_dim: int, tokens: int, nbytes: int) -> int:
    """What the library's caches hold after ``tokens`` steps of a model of that shape."""
    from attnlab.attention import MultiHeadAttention
    from attnlab.cache import KVCache
    dtype = {8: torch.float64, 4: torch.float32, 2: torch.float16}[nbytes]
    layer = MultiHeadAttention(kv_heads * head_dim, kv_heads, bias=False).to(dtype)
    cache = KVCache()
    with torch.no_grad():
        layer(torch.zeros(1, tokens, kv_heads * head_dim, dtype=dtype), cache=cache)
    return layers * cache.nbytes  # one cache per layer, all alike


@checker("ex-gen-cache-size")
def check_cache_bytes(answer) -> Feedback:
    r"""Exercise :ref:`ex-gen-cache-size`: the bytes of a key/value cache.

    ``answer`` is a formula ``f(layers, kv_heads, head_dim, tokens, bytes_per_number)``, held
    against what :class:`attnlab.cache.KVCache` holds after that many tokens (one cache per
    layer, float64, float32 and float16).
    """
    names = ("layers", "kv_heads", "head_dim", "tokens", "bytes_per_number")

    def draw(rng):
        return (rng.randint(1, 6), rng.choice((1, 2, 4)), rng.choice((2, 4, 8)),
                rng.randint(1, 40), rng.choice((2, 4, 8)))

    points = fresh_points([(3, 1, 4, 7, 4), (1, 4, 2, 9, 2), (3, 2, 8, 5, 8), (4, 2, 4, 16, 4)],
                          draw)
    got = formula_values(answer, points, names)
    if isinstance(got, Feedback):
        return got
    for (L, kv, d, T, b), value in got.items():
        expected = _held_bytes(L, kv, d, T, b)
        hint = diagnose(value, expected, [
            (L * kv * d * T * b, "that is the keys alone (or the values alone): the cache keeps "
                                 "both, a factor of 2."),
            (2 * kv * d * T * b, "that is one layer's cache: every layer keeps its own."),
            (2 * L * kv * d * T, "that counts numbers, not bytes: multiply by the bytes per "
                                 "number."),
            (2 * L * d * T * b, "the key/value heads are missing: each keeps its own key and "
                                "value."),
            (2 * L * kv * d * T * T * b, "the cache grows linearly with the tokens: one key "
                                         "and one value per token, not one per pair."),
        ])
        if hint is not None:
            return Feedback(False, f"for L = {L}, h_kv = {kv}, d = {d}, T = {T}, {b} bytes: the "
                                   f"cache holds {expected:,} bytes, your formula gives "
                                   f"{fmt(value)}. " + (hint or "Count what one layer stores "
                                                        "for one token, then multiply."))
    return Feedback(True, f"2 L h_kv d T b matches the caches on all {len(got)} shapes. The "
                          "query heads do not appear: queries are never kept.")


# --- Derive: where the cache stops fitting -----------------------------------------------------

@checker("ex-gen-break-even")
def check_break_even(answer) -> Feedback:
    r"""Exercise :ref:`ex-gen-break-even`: the longest length whose caches still fit.

    ``answer`` is a formula ``f(memory, weight_bytes, batch, bytes_per_token)`` returning
    :math:`\lfloor (M - P) / (n c) \rfloor` (a whole number of tokens; a value within one token
    of it passes).
    """
    names = ("memory", "weight_bytes", "batch", "bytes_per_token")

    def draw(rng):
        return (rng.randint(40, 200) * 10**9, rng.randint(1, 30) * 10**9, rng.choice((1, 8, 64)),
                rng.choice((32768, 131072, 327680, 524288)))

    points = fresh_points([(80 * 10**9, 14_480_000_000, 32, 131072),
                           (24 * 2**30, 2 * 7 * 10**9, 1, 524288),
                           (640 * 10**9, 140 * 10**9, 64, 327680)], draw)
    got = formula_values(answer, points, names)
    if isinstance(got, Feedback):
        return got
    for (M, P, n, c), value in got.items():
        expected = (M - P) // (n * c)
        if abs(value - expected) <= 1:
            continue
        hint = diagnose(value, expected, [
            (M // (n * c), "the weights take memory too: subtract them first."),
            ((M - P) // c, "every sequence of the batch has its own cache: divide by n too."),
            ((M - P) / (n * c) / 2, "bytes_per_token already counts keys and values."),
        ], rel=1e-3)
        return Feedback(False, f"for M = {M:,}, P = {P:,}, n = {n}, c = {c:,}: the caches fit "
                               f"up to {expected:,} tokens, your formula gives {fmt(value)}. "
                               + (hint or "What must hold for P + (caches) to fit in M?"))
    return Feedback(True, f"T* = floor((M - P) / (n c)) on all {len(got)} cases.")


# --- Build: grouped-query attention from tensors -----------------------------------------------

def _gqa_cases():
    g = generator(17)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    for B, T, D, h, kv, causal, scale in ((2, 5, 16, 4, 2, True, 1.0), (1, 7, 16, 4, 4, True, 1.0),
                                          (2, 6, 24, 6, 1, True, 1.0), (1, 4, 16, 8, 2, False, 1.0),
                                          (3, 1, 8, 2, 1, True, 1.0), (2, 6, 16, 4, 2, True, 20.0)):
        d = D // h
        args = (randn(B, T, D, scale=scale), randn(D, D) / math.sqrt(D),
                randn(D, kv * d) / math.sqrt(D), randn(D, kv * d) / math.sqrt(D),
                randn(D, D) / math.sqrt(D), h, kv, causal)
        what = (f"x {(B, T, D)}, h = {h}, h_kv = {kv}" + (", causal" if causal else "")
                + (f", entries of std {scale:g}" if scale != 1 else ""))
        yield what, args


def _library_gqa(x, W_q, W_k, W_v, W_o, h, kv, causal):
    from attnlab.attention import MultiHeadAttention
    layer = MultiHeadAttention(x.shape[-1], h, num_kv_heads=kv, bias=False).double()
    with torch.no_grad():
        for lin, w in ((layer.q_proj, W_q), (layer.k_proj, W_k), (layer.v_proj, W_v),
                       (layer.out_proj, W_o)):
            lin.weight.copy_(w.T)
        return layer(x, is_causal=causal)


def _gqa(x, W_q, W_k, W_v, W_o, h, kv, causal, *, grouping="contiguous", scale=None,
         mask=True):
    """Grouped-query attention from tensors, and the typical mistakes as switches."""
    B, T, D = x.shape
    d = D // h
    q = (x @ W_q).view(B, T, h, d).transpose(1, 2)
    k = (x @ W_k).view(B, T, kv, d).transpose(1, 2)
    v = (x @ W_v).view(B, T, kv, d).transpose(1, 2)
    if grouping == "contiguous":            # head i reads key/value head i // (h / kv)
        k, v = k.repeat_interleave(h // kv, 1), v.repeat_interleave(h // kv, 1)
    else:                                   # head i reads key/value head i % kv
        k, v = k.repeat(1, h // kv, 1, 1), v.repeat(1, h // kv, 1, 1)
    s = q @ k.transpose(-2, -1) / math.sqrt(d if scale is None else scale)
    if causal and mask:
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D) @ W_o


@checker("ex-gen-gqa", forbid=ATTENTION + MULTI_HEAD)
def check_gqa(fn) -> Feedback:
    r"""Exercise :ref:`ex-gen-gqa`: grouped-query self-attention from tensors.

    ``fn(x, W_q, W_k, W_v, W_o, num_heads, num_kv_heads, causal)`` gets ``x (B, T, D)``,
    ``W_q, W_o (D, D)``, ``W_k, W_v (D, h_kv d)`` (applied as ``x @ W``) and returns ``(B, T,
    D)``. It is held against :class:`attnlab.attention.MultiHeadAttention` with
    ``num_kv_heads`` and the same weights (no biases), from multi-head (h_kv = h) to
    multi-query (h_kv = 1), with and without the causal mask, one token, and large entries.
    """
    def cases():
        for case, args in _gqa_cases():
            yield case, args, _library_gqa(*args)

    def wrong(**kw):
        return lambda *args: _gqa(*args, **kw)

    mistakes = [
        (wrong(grouping="interleaved"), "The groups are interleaved: query head i should read "
                                        "key/value head i // (h / h_kv) (heads 0 .. h/h_kv - 1 "
                                        "share the first), not i % h_kv; use repeat_interleave, "
                                        "not repeat."),
        (lambda x, *a: _gqa(x, *a, scale=x.shape[-1]),
         "The scores are divided by sqrt(D); each head compares vectors of width d = D/h."),
        (wrong(mask=False), "The causal mask is missing: with causal=True query t may only see "
                            "keys s <= t."),
    ]
    return check_build(fn, cases(), what="MultiHeadAttention(num_kv_heads=...)", atol=1e-8,
                       mistakes=mistakes, done="Groups, scale and mask all agree.")
