"""Chapter 8's checkers: the reference passes; each typical mistake gets its own hint."""
import torch

from attnlab.exercises import check_cross_attention, check_kv_cache
from attnlab.functional import scaled_dot_product_attention as sdpa
from _feedback import not_done, wrong


def cross(x, memory, w_q, w_k, w_v, w_o, num_heads, key_mask=None, *, scale=None,
          project=True):
    B, T, D = x.shape
    split = lambda t: t.view(B, t.shape[1], num_heads, D // num_heads).transpose(1, 2)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    heads = sdpa(split(x @ w_q.T), split(memory @ w_k.T), split(memory @ w_v.T), mask,
                 scale=scale)
    out = heads.transpose(1, 2).reshape(B, T, D)
    return out @ w_o.T if project else out


def test_cross_attention_reference_passes():
    feedback = check_cross_attention(cross)
    assert feedback.ok and feedback.startswith("Correct!") and "10 cases" in feedback


def test_cross_attention_mistakes_are_named():
    assert wrong(check_cross_attention(lambda x, m, wq, wk, wv, wo, h, mask:
                                       cross(x, m, wq, wk, wv, wo, h, None)),
                 "padding mask is ignored", "with padding")
    assert wrong(check_cross_attention(lambda x, m, wq, wk, wv, wo, h, mask:
                                       cross(x, m, wq, wk, wv, wo, h,
                                             None if mask is None else ~mask)),
                 "inverted")
    assert wrong(check_cross_attention(lambda *a: cross(*a, scale=1.0)), "not scaled", "sqrt(d)")
    assert wrong(check_cross_attention(lambda x, m, wq, wk, wv, wo, h, mask:
                                       cross(x, m, wq, wk, wv, wo, 1, mask)),
                 "One head", "num_heads")
    assert wrong(check_cross_attention(lambda *a: cross(*a, project=False)),
                 "output projection")
    assert wrong(check_cross_attention(lambda x, m, *a: cross(x, m, *a) + 1e-3),
                 "off by up to 0.001")


def test_cross_attention_shapes_and_stubs():
    swapped = lambda x, m, wq, wk, wv, wo, h, mask: cross(m, x, wq, wk, wv, wo, h, None)
    assert wrong(check_cross_attention(swapped), "expected shape (2, 3, 8), got (2, 5, 8)",
                 "output (B, T, D)")
    assert wrong(check_cross_attention("my answer"), "pass your function")
    assert wrong(check_cross_attention(lambda *a: 1 / 0), "ZeroDivisionError")

    def stub(x, memory, w_q, w_k, w_v, w_o, num_heads, key_mask=None):
        raise NotImplementedError
    assert not_done(check_cross_attention(stub))
    assert not_done(check_cross_attention(lambda *a: None))
    assert not_done(check_cross_attention(...))


def test_kv_cache_counts():
    feedback = check_kv_cache(1870, 355)
    assert feedback.ok and feedback.startswith("Correct!") and "5.3 times" in feedback
    assert check_kv_cache(torch.tensor(1870), 355.0).ok
    assert check_kv_cache(4 * 5 * 6 // 6 + 7 * 10, 10 + 7 * 4, T=4, S=7).ok


def test_kv_cache_mistakes_are_named():
    assert wrong(check_kv_cache(2035, 355), "t(t+1)/2", "not t^2")
    assert wrong(check_kv_cache(1650, 355), "self-attention scores too")
    assert wrong(check_kv_cache(220, 355), "cross-attention scores too")
    assert wrong(check_kv_cache(355, 355), "with the cache")
    assert wrong(check_kv_cache(1515, 355), "t = 1, ..., T")
    assert wrong(check_kv_cache(1870, 400), "t scores, not T")
    assert wrong(check_kv_cache(1870, 1705), "same at every step")
    assert wrong(check_kv_cache(1870, 1870), "without the cache")
    assert wrong(check_kv_cache(2035, 1705), "recomputed:", "cached:")
    assert wrong(check_kv_cache(1000, 355), "step by step")


def test_kv_cache_stubs_and_bad_answers():
    assert not_done(check_kv_cache(..., ...))
    assert not_done(check_kv_cache(1870, ...))
    assert wrong(check_kv_cache("1870", 355), "should be a number", "str")
    assert wrong(check_kv_cache(1870, [355, 1]), "cached should be a number")
