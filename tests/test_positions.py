"""RoPE, ALiBi and T5's relative bias: the relative property, parity with independent
implementations (rotary-embedding-torch, x-transformers; test oracles only), the seam of
MultiHeadAttention, the return_attention contract and bad input."""
import math

import pytest
import torch

from attnlab.attention import MultiHeadAttention
from attnlab.positions import (ALiBiAttention, RotaryAttention, T5RelativeBias, alibi_bias,
                               alibi_slopes, apply_rope, ntk_scaled_base, pairing_permutation,
                               t5_bucket)


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_score_depends_on_the_offset_only(interleaved):
    """<R_m q, R_n k> is the same for (m, n) and (m + c, n + c), to 1e-12 in float64."""
    d = 16
    q, k = rand(1, d, seed=1), rand(1, d, seed=2)

    def score(m, n):
        qm = apply_rope(q, torch.tensor([m]), interleaved=interleaved)
        kn = apply_rope(k, torch.tensor([n]), interleaved=interleaved)
        return (qm * kn).sum().item()

    for m, n in [(0, 0), (3, 7), (11, 2), (100, 37)]:
        for c in (1, 5, 1000):
            assert score(m, n) == pytest.approx(score(m + c, n + c), abs=1e-12)
        # and equals <q, R_{n-m} k>
        k_rel = apply_rope(k, torch.tensor([n - m]), interleaved=interleaved)
        assert score(m, n) == pytest.approx((q * k_rel).sum().item(), abs=1e-12)


def test_rope_keeps_norms_and_position_zero_is_the_identity():
    x = rand(2, 5, 8)
    y = apply_rope(x)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-12)
    assert torch.equal(apply_rope(x, torch.zeros(5))[..., :], x)


def test_the_two_pairings_are_one_function_up_to_a_permutation():
    x, d = rand(3, 6, 12), 12
    p = pairing_permutation(d)
    assert torch.allclose(apply_rope(x[..., p], interleaved=False),
                          apply_rope(x, interleaved=True)[..., p], atol=1e-12)


def test_rotate_half_matches_llamas_formula():
    """The halves pairing as LLaMA's code writes it: x cos + rotate_half(x) sin."""
    x, d, L = rand(2, 7, 8), 8, 7
    inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    freqs = torch.arange(L, dtype=torch.float64)[:, None] * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    expected = x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()
    assert torch.allclose(apply_rope(x, interleaved=False), expected, atol=1e-12)


def test_rope_matches_rotary_embedding_torch():
    rotary_embedding_torch = pytest.importorskip("rotary_embedding_torch")
    x = rand(2, 3, 9, 16, dtype=torch.float32)
    theirs = rotary_embedding_torch.RotaryEmbedding(dim=16).rotate_queries_or_keys(x)
    assert torch.allclose(apply_rope(x), theirs, atol=1e-5)


def test_rope_interpolation_and_ntk_base_match_x_transformers():
    xt = pytest.importorskip("x_transformers.x_transformers")
    x, L, d = rand(2, 4, 10, 16, dtype=torch.float32), 10, 16
    for factor in (1.0, 2.0, 4.0):
        freqs, scale = xt.RotaryEmbedding(d, interpolation_factor=factor)(torch.arange(L))
        theirs = xt.apply_rotary_pos_emb(x, freqs, scale)
        assert torch.allclose(apply_rope(x, scale=1 / factor), theirs, atol=1e-5)
    freqs, scale = xt.RotaryEmbedding(d, base_rescale_factor=8.0)(torch.arange(L))
    ours = apply_rope(x, base=ntk_scaled_base(10000.0, 8.0, d))
    assert torch.allclose(ours, xt.apply_rotary_pos_emb(x, freqs, scale), atol=1e-4)


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5, 6, 8, 12, 16])
def test_alibi_slopes_and_bias_match_x_transformers(h):
    xt = pytest.importorskip("x_transformers.x_transformers")
    ref = xt.AlibiPositionalBias(heads=h, total_heads=h)
    assert torch.allclose(alibi_slopes(h).float(), ref.slopes.flatten(), atol=1e-7)
    for T, S in [(6, 6), (2, 7)]:
        assert torch.allclose(alibi_bias(h, T, S).float(), ref(T, S), atol=1e-6)


def test_alibi_slopes_are_geometric_for_powers_of_two():
    s = alibi_slopes(8)
    assert s[0] == pytest.approx(0.5) and torch.allclose(s[1:] / s[:-1], torch.full((7,), 0.5, dtype=s.dtype))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_and_bias_match_x_transformers(bidirectional):
    xt = pytest.importorskip("x_transformers.x_transformers")
    offsets = torch.arange(-300, 301)
    theirs = xt.RelativePositionBias._relative_position_bucket(
        offsets, causal=not bidirectional, num_buckets=32, max_distance=128)
    assert torch.equal(t5_bucket(offsets, bidirectional=bidirectional), theirs)
    ours = T5RelativeBias(4, bidirectional=bidirectional)
    ref = xt.RelativePositionBias(scale=1.0, causal=not bidirectional, heads=4)
    ref.relative_attention_bias.weight.data.copy_(ours.relative_attention_bias.weight.data)
    assert torch.allclose(ours.bias(5, 9), ref(5, 9), atol=1e-6)


@pytest.mark.parametrize("make", [lambda h: RotaryAttention(), lambda h: ALiBiAttention(h),
                                  lambda h: T5RelativeBias(h)], ids=["rope", "alibi", "t5"])
def test_through_multi_head_attention_seam_and_the_contract(make):
    torch.manual_seed(0)
    B, T, D, h = 2, 6, 16, 4
    mha = MultiHeadAttention(D, h, attention=make(h)).double()
    x = rand(B, T, D)
    key_mask = torch.ones(B, T, dtype=torch.bool)
    key_mask[1, 4:] = False
    y, w = mha(x, key_mask=key_mask, is_causal=True, return_attention=True)
    assert y.shape == (B, T, D) and w.shape == (B, h, T, T)
    assert torch.allclose(w.sum(-1), torch.ones(B, h, T, dtype=w.dtype))
    assert (w[1, :, :, 4:] == 0).all() and (w.triu(1) == 0).all()
    assert torch.allclose(mha(x, key_mask=key_mask, is_causal=True), y, atol=1e-12)  # fused path


def test_alibi_attention_is_softmax_of_scaled_scores_plus_bias():
    q, k, v = rand(1, 4, 5, 8, seed=1), rand(1, 4, 5, 8, seed=2), rand(1, 4, 5, 8, seed=3)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8) + alibi_bias(4, 5), -1) @ v
    assert torch.allclose(ALiBiAttention(4)(q, k, v), expected, atol=1e-12)


def test_rotary_attention_with_fewer_queries_is_decoding_with_a_cache():
    """The last query alone, against all keys, gives the last row of full causal attention."""
    q, k, v = rand(1, 2, 7, 8, seed=1), rand(1, 2, 7, 8, seed=2), rand(1, 2, 7, 8, seed=3)
    att = RotaryAttention()
    full = att(q, k, v, is_causal=True)
    last = att(q[..., -1:, :], k, v, is_causal=True)
    assert torch.allclose(last, full[..., -1:, :], atol=1e-12)


def test_t5_bias_learns():
    t5 = T5RelativeBias(2)
    q = rand(1, 2, 4, 8, dtype=torch.float32)
    t5(q, q, q).sum().backward()
    assert t5.relative_attention_bias.weight.grad.abs().sum() > 0


def test_bad_input_says_what_is_wrong():
    x = rand(2, 5, 7)
    with pytest.raises(ValueError, match="head_dim must be even"):
        apply_rope(x)
    with pytest.raises(ValueError, match=r"positions must have shape \(5,\)"):
        apply_rope(rand(2, 5, 8), torch.arange(4))
    with pytest.raises(TypeError, match="positions must be a 1-D torch.Tensor"):
        apply_rope(rand(2, 5, 8), [0, 1, 2, 3, 4])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        apply_rope([[0.0, 1.0]])
    with pytest.raises(TypeError, match="floating point"):
        apply_rope(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        RotaryAttention(scale=0)
    with pytest.raises(ValueError, match="num_heads must be >= 1"):
        alibi_slopes(0)
    with pytest.raises(TypeError, match="num_heads must be an int"):
        ALiBiAttention(2.5)
    with pytest.raises(ValueError, match=r"q must have shape \(B, h, T, d\) with h = 4"):
        ALiBiAttention(4)(rand(1, 2, 3, 8), rand(1, 2, 3, 8), rand(1, 2, 3, 8))
    with pytest.raises(ValueError, match="no room for logarithmic buckets"):
        T5RelativeBias(2, num_buckets=2)
    with pytest.raises(TypeError, match="integer torch.Tensor"):
        t5_bucket(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="head_dim must be even"):
        ntk_scaled_base(10000.0, 2.0, 7)
