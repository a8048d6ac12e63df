"""Chapter 17's checkers: the reference passes; each typical mistake gets its own hint."""
import math

import torch

from attnlab.exercises import check_break_even, check_cache_bytes, check_gqa
from attnlab.exercises._core import grading
from _feedback import not_done, wrong


# --- Derive: the cache's size ------------------------------------------------------------------

def test_cache_bytes_formula_passes():
    feedback = check_cache_bytes(lambda L, kv, d, T, b: 2 * L * kv * d * T * b)
    assert feedback.ok and "4 shapes" in feedback


def test_cache_bytes_mistakes_are_named():
    assert wrong(check_cache_bytes(lambda L, kv, d, T, b: L * kv * d * T * b), "factor of 2")
    assert wrong(check_cache_bytes(lambda L, kv, d, T, b: 2 * kv * d * T * b), "every layer")
    assert wrong(check_cache_bytes(lambda L, kv, d, T, b: 2 * L * kv * d * T), "not bytes")
    assert wrong(check_cache_bytes(lambda L, kv, d, T, b: 2 * L * d * T * b), "key/value heads")
    assert wrong(check_cache_bytes(lambda L, kv, d, T, b: 2 * L * kv * d * T * T * b),
                 "linearly")
    assert wrong(check_cache_bytes(lambda L, kv, d, T, b: 3), "Count what one layer")
    assert wrong(check_cache_bytes(lambda L, kv: 1), "TypeError")
    assert not_done(check_cache_bytes(...))
    assert not_done(check_cache_bytes(lambda *a: ...))


def test_cache_bytes_meets_fresh_shapes_when_graded():
    lookup = {(3, 1, 4, 7, 4): 672, (3, 2, 8, 5, 8): 3840, (1, 4, 2, 9, 2): 288,
              (4, 2, 4, 16, 4): 4096}
    with grading(7):  # a table of the usual points meets shapes it does not know
        assert not check_cache_bytes(lambda *p: lookup.get(p, 0)).ok


# --- Derive: the break-even length ---------------------------------------------------------------

def test_break_even_passes_and_names_mistakes():
    assert check_break_even(lambda M, P, n, c: (M - P) // (n * c)).ok
    assert check_break_even(lambda M, P, n, c: (M - P) / (n * c)).ok  # within one token
    assert wrong(check_break_even(lambda M, P, n, c: M // (n * c)), "weights take memory")
    assert wrong(check_break_even(lambda M, P, n, c: (M - P) // c), "divide by n")
    assert wrong(check_break_even(lambda M, P, n, c: 0), "15,621")
    assert not_done(check_break_even(...))


# --- Build: grouped-query attention ------------------------------------------------------------

def gqa(x, W_q, W_k, W_v, W_o, h, kv, causal=True, *, interleaved=False, scale=None,
        mask=True):
    B, T, D = x.shape
    d = D // h
    q = (x @ W_q).view(B, T, kv, h // kv, d).permute(0, 2, 3, 1, 4)
    k = (x @ W_k).view(B, T, kv, d).transpose(1, 2)[:, :, None]
    v = (x @ W_v).view(B, T, kv, d).transpose(1, 2)[:, :, None]
    if interleaved:  # group j holds heads j, j + kv, ...
        q = (x @ W_q).view(B, T, h // kv, kv, d).permute(0, 3, 2, 1, 4)
    s = q @ k.transpose(-2, -1) / math.sqrt(scale or d)
    if causal and mask:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    out = s.softmax(-1) @ v  # (B, kv, h/kv, T, d)
    out = out.permute(0, 3, 2, 1, 4) if interleaved else out.permute(0, 3, 1, 2, 4)
    return out.reshape(B, T, D) @ W_o


def test_gqa_reference_passes():
    feedback = check_gqa(gqa)
    assert feedback.ok and "6 cases" in feedback


def test_gqa_mistakes_are_named():
    assert wrong(check_gqa(lambda *a: gqa(*a, interleaved=True)), "interleaved",
                 "repeat_interleave")
    assert wrong(check_gqa(lambda x, *a: gqa(x, *a, scale=x.shape[-1])), "sqrt(D)")
    assert wrong(check_gqa(lambda *a: gqa(*a, mask=False)), "causal mask is missing")
    assert wrong(check_gqa(lambda *a: gqa(*a).float()), "float32")
    assert wrong(check_gqa(lambda x, *a: x[..., :1]), "expected shape")


def test_gqa_stub_is_not_done():
    def stub(*args):
        raise NotImplementedError
    assert not_done(check_gqa(stub))
