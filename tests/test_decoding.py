"""Attention while generating: grouped-query heads and the key/value cache of MultiHeadAttention.

Cached decoding must give what recomputing the whole sequence gives (float64, 1e-12), with and
without a sliding window and sinks; grouped and multi-query heads must match PyTorch's
`enable_gqa` and an explicit repeat of the key/value heads."""
import pytest
import torch
import torch.nn.functional as F

from attnlab.attention import KVCache, MultiHeadAttention
from attnlab.functional import sliding_window_mask
from attnlab.positions import RotaryAttention


def model(h=4, h_kv=None, D=16, seed=0, **kw):
    torch.manual_seed(seed)
    return MultiHeadAttention(D, h, num_kv_heads=h_kv, **kw).double().eval()


def x_of(B=2, T=9, D=16, seed=1):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("h_kv", [4, 2, 1])
def test_grouped_heads_match_pytorchs_enable_gqa_and_an_explicit_repeat(h_kv):
    mha, x = model(4, h_kv), x_of()
    B, T, _ = x.shape
    q = mha.q_proj(x).view(B, T, 4, 4).transpose(1, 2)
    k = mha.k_proj(x).view(B, T, h_kv, 4).transpose(1, 2)
    v = mha.v_proj(x).view(B, T, h_kv, 4).transpose(1, 2)
    gqa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    rep = F.scaled_dot_product_attention(q, k.repeat_interleave(4 // h_kv, 1),
                                         v.repeat_interleave(4 // h_kv, 1), is_causal=True)
    expected = mha.out_proj(gqa.transpose(1, 2).reshape(B, T, 16))
    assert torch.allclose(mha(x, is_causal=True), expected, atol=1e-12)
    assert torch.allclose(gqa, rep, atol=1e-12)
    assert mha.k_proj.weight.shape == (h_kv * 4, 16)


def test_default_keeps_one_key_value_head_per_query_head():
    torch.manual_seed(0)
    a = MultiHeadAttention(16, 4)
    torch.manual_seed(0)
    b = MultiHeadAttention(16, 4, num_kv_heads=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def decode(mha, x, cache, chunks):
    outs, start = [], 0
    for n in chunks:
        outs.append(mha(x[:, start:start + n], cache=cache))
        start += n
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("h_kv", [4, 2, 1])
@pytest.mark.parametrize("chunks", [[1] * 9, [3, 1, 5]])
def test_cached_decoding_equals_full_recomputation(h_kv, chunks):
    mha, x = model(4, h_kv), x_of()
    full = mha(x, is_causal=True)
    cache = KVCache()
    assert torch.allclose(decode(mha, x, cache, chunks), full, atol=1e-12)
    assert len(cache) == 9 and cache.seen == 9
    assert cache.nbytes == 2 * 2 * h_kv * 9 * 4 * 8  # 2 x B x h_kv x S x d x bytes


@pytest.mark.parametrize("window,sinks", [(3, 0), (1, 0), (4, 2), (2, 1)])
@pytest.mark.parametrize("chunks", [[1] * 9, [2, 4, 3]])
def test_a_rolling_window_with_sinks_equals_the_band_mask(window, sinks, chunks):
    mha, x = model(4, 2), x_of()
    band = sliding_window_mask(9, 9, window, sinks)
    full = mha(x, attn_mask=band)
    cache = KVCache(window=window, sinks=sinks)
    assert torch.allclose(decode(mha, x, cache, chunks), full, atol=1e-12)
    assert len(cache) == min(9, window + sinks)  # the memory stops growing


def test_rotary_positions_survive_the_rolling_buffer():
    """RoPE depends on offsets only, so positions counted inside the buffer give the same
    outputs as absolute ones."""
    mha, x = model(4, 2, attention=RotaryAttention()), x_of()
    full = mha(x, attn_mask=sliding_window_mask(9, 9, 3))
    assert torch.allclose(decode(mha, x, KVCache(window=3), [1] * 9), full, atol=1e-12)
    assert torch.allclose(decode(mha, x, KVCache(), [4, 5]), mha(x, is_causal=True), atol=1e-12)


def test_cached_weights_keep_the_contract():
    mha, x = model(4, 1), x_of()
    cache = KVCache(window=4)
    mha(x[:, :6], cache=cache)
    y, w = mha(x[:, 6:8], cache=cache, return_attention=True)
    assert y.shape == (2, 2, 16) and w.shape == (2, 4, 2, 6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 2, dtype=w.dtype))


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match=r"num_heads \(4\) must be divisible by num_kv_heads \(3\)"):
        MultiHeadAttention(16, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads must be >= 1"):
        MultiHeadAttention(16, 4, num_kv_heads=0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        KVCache(window=0)
    with pytest.raises(ValueError, match="sinks need a window"):
        KVCache(sinks=2)
    with pytest.raises(ValueError, match="sinks must be an int >= 0"):
        KVCache(window=2, sinks=-1)
    mha, x = model(4, 2), x_of()
    cache = KVCache()
    mha(x[:, :3], cache=cache)
    with pytest.raises(ValueError, match="one cache per layer and per batch"):
        mha(x[:1, 3:4], cache=cache)
    with pytest.raises(ValueError, match="one cache per layer"):
        model(4, 4)(x[:, 3:4], cache=cache)  # 4 key/value heads against 2
    wide = model(2, 2, D=32)  # 2 heads of width 16 against a cache of width 4
    with pytest.raises(ValueError, match=r"\(B, h_kv, S, d\) = \(2, 2, 3, 4\)"):
        wide(x_of(D=32)[:, 3:4], cache=cache)
    with pytest.raises(ValueError, match="key, value and key_mask must be None"):
        mha(x, x, cache=KVCache())
    with pytest.raises(TypeError, match="cache must be an attnlab.attention.KVCache"):
        mha(x, cache={})
    with pytest.raises(ValueError, match="at least one new token"):
        mha(x[:, :0], cache=KVCache())
