"""Tests for attnlab.attention: parity with torch and timm, properties, errors, dtypes."""
import pytest
import torch
from torch import nn

from attnlab.attention import (LearnedPositionalEncoding, MultiHeadAttention, SelfAttention,
                               SinusoidalPositionalEncoding)
from attnlab.functional import causal_mask

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
B, T, S, D, H = 2, 5, 7, 8, 2


def _mha_pair(dtype, kdim=None, vdim=None, bias=True):
    """Our MHA and nn.MultiheadAttention with the same weights (copied by from_torch)."""
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(D, H, bias=bias, batch_first=True, kdim=kdim, vdim=vdim).to(dtype)
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.q_proj.weight.dtype == dtype and ours.kdim == (kdim or D)
    return ours.eval(), ref.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [False, True])
def test_parity_nn_mha_causal_and_padding(dtype, fused):
    ours, ref = _mha_pair(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, D, generator=g, dtype=dtype)
    keep = torch.ones(B, T, dtype=torch.bool)  # ours: True = real token
    keep[1, -2:] = False  # the last two keys of sample 1 are padding
    ours_out = ours(x, key_mask=keep, is_causal=True, return_attention=not fused)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=~keep, attn_mask=~causal_mask(T),  # True = blocked
                         need_weights=True, average_attn_weights=False)
    y = ours_out if fused else ours_out[0]
    torch.testing.assert_close(y, ref_out, atol=TOL[dtype], rtol=0)
    if not fused:
        w = ours_out[1]
        assert w.shape == (B, H, T, T)
        torch.testing.assert_close(w, ref_w, atol=TOL[dtype], rtol=0)
        assert torch.all(w[1, :, :, -2:] == 0)  # padding gets weight exactly 0
        assert torch.all(w.triu(1) == 0)  # no query sees the future


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_nn_mha_cross_attention_kdim_vdim_and_3d_mask(dtype):
    ours, ref = _mha_pair(dtype, kdim=6, vdim=3)
    g = torch.Generator().manual_seed(2)
    q = torch.randn(B, T, D, generator=g, dtype=dtype)
    k = torch.randn(B, S, 6, generator=g, dtype=dtype)
    v = torch.randn(B, S, 3, generator=g, dtype=dtype)
    mask = torch.rand(B, T, S, generator=g) > 0.3
    mask[..., 0] = True  # every query sees at least one key (nn.MultiheadAttention gives NaN else)
    y, w = ours(q, k, v, attn_mask=mask, return_attention=True)
    ref_mask = (~mask).repeat_interleave(H, dim=0)  # theirs: (B*h, T, S), True = blocked
    ref_y, ref_w = ref(q, k, v, attn_mask=ref_mask, average_attn_weights=False)
    torch.testing.assert_close(y, ref_y, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(w, ref_w, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(ours(q, k, v, attn_mask=mask), ref_y, atol=TOL[dtype], rtol=0)


def test_parity_nn_mha_float_mask_no_bias():
    ours, ref = _mha_pair(torch.float64, bias=False)
    x = torch.randn(B, T, D, dtype=torch.float64)
    bias = torch.randn(T, T, dtype=torch.float64)  # a float mask is added to the scores (both)
    torch.testing.assert_close(ours(x, attn_mask=bias), ref(x, x, x, attn_mask=bias)[0],
                               atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_timm_attention(dtype):
    timm_attention = pytest.importorskip("timm.layers.attention")
    torch.manual_seed(0)
    ref = timm_attention.Attention(D, num_heads=H, qkv_bias=True).to(dtype).eval()
    ours = MultiHeadAttention(D, H).to(dtype).eval()
    with torch.no_grad():
        for mine, w, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), ref.qkv.weight.chunk(3),
                              ref.qkv.bias.chunk(3)):
            mine.weight.copy_(w)
            mine.bias.copy_(b)
        ours.out_proj.load_state_dict(ref.proj.state_dict())
    x = torch.randn(B, T, D, dtype=dtype)
    mask = causal_mask(T)  # timm passes a bool mask to F.sdpa: True = may attend, like ours
    for kwargs in ({}, {"attn_mask": mask}):
        expected = ref(x, **kwargs)
        torch.testing.assert_close(ours(x, **kwargs), expected, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(ours(x, return_attention=True, **kwargs)[0], expected,
                                   atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_explicit(dtype):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, 4).to(dtype).eval()
    x = torch.randn(B, T, D, dtype=dtype)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    extra = torch.randn(T, T, dtype=dtype)
    for kw in ({}, {"is_causal": True}, {"key_mask": keep},
               {"key_mask": keep, "is_causal": True, "attn_mask": extra}):
        fused = mha(x, **kw)
        explicit, w = mha(x, return_attention=True, **kw)
        torch.testing.assert_close(fused, explicit, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(w.sum(-1), torch.ones(B, 4, T, dtype=dtype), atol=TOL[dtype], rtol=0)


def test_self_attention_matches_the_formula_and_one_head_mha():
    torch.manual_seed(0)
    sa = SelfAttention(D, head_dim=4).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    y, w = sa(x, return_attention=True)
    q, k, v = x @ sa.q_proj.weight.T, x @ sa.k_proj.weight.T, x @ sa.v_proj.weight.T
    w_ref = torch.softmax(q @ k.transpose(1, 2) / 2.0, dim=-1)  # sqrt(d) = 2
    assert w.shape == (B, T, T) and y.shape == (B, T, 4)
    torch.testing.assert_close(w, w_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(y, w_ref @ v, atol=1e-10, rtol=0)
    torch.testing.assert_close(sa(x), y, atol=1e-10, rtol=0)  # fused path
    torch.testing.assert_close(sa.scores(x).softmax(-1), w, atol=1e-10, rtol=0)
    yc, wc = sa(x, is_causal=True, return_attention=True)
    assert torch.all(wc.triu(1) == 0)
    torch.testing.assert_close(sa(x, is_causal=True), yc, atol=1e-10, rtol=0)


def test_mha_scores_are_the_weights_before_the_softmax():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, kdim=6, vdim=6).double().eval()
    q, k = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, S, 6, dtype=torch.float64)
    _, w = mha(q, k, k, return_attention=True)
    torch.testing.assert_close(mha.scores(q, k).softmax(-1), w, atol=1e-12, rtol=0)
    assert mha.scores(q, k).shape == (B, H, T, S)


def test_permutation_equivariance_and_positions_break_it():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H).double().eval()
    sa = SelfAttention(D).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    perm = torch.randperm(T)
    for f in (mha, sa):
        torch.testing.assert_close(f(x[:, perm]), f(x)[:, perm], atol=1e-10, rtol=0)
    y, w = mha(x, return_attention=True)
    y_p, w_p = mha(x[:, perm], return_attention=True)
    torch.testing.assert_close(w_p, w[:, :, perm][..., perm], atol=1e-10, rtol=0)
    for pe in (SinusoidalPositionalEncoding(D).double(), LearnedPositionalEncoding(D, 16).double()):
        diff = (mha(pe(x[:, perm])) - mha(pe(x))[:, perm]).abs().max()
        assert diff > 1e-3, diff


def test_fully_masked_rows_are_finite_zero():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, bias=False).eval()
    x = torch.randn(B, T, D)
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[0] = False  # sample 0 has no visible key at all
    for ret in (False, True):
        out = mha(x, key_mask=keep, return_attention=ret)
        y = out[0] if ret else out
        assert torch.isfinite(y).all()
        assert torch.all(y[0] == 0)  # zero output, and no bias in W^O
        if ret:
            assert torch.all(out[1][0] == 0)
    float_mask = torch.zeros(T, T).masked_fill(torch.eye(T, dtype=torch.bool), float("-inf"))
    float_mask[2] = float("-inf")  # query 2 blocked everywhere by a float mask
    for ret in (False, True):
        out = mha(x, attn_mask=float_mask, return_attention=ret)
        y = out[0] if ret else out
        assert torch.isfinite(y).all() and torch.all(y[:, 2] == 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H).to(dtype).eval()
    x = (torch.randn(B, T, D) * 30).to(dtype)  # large scores
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[1] = False
    for ret in (False, True):
        out = mha(x, key_mask=keep, is_causal=True, return_attention=ret)
        y = out[0] if ret else out
        assert y.dtype == dtype and torch.isfinite(y).all()
    ref = MultiHeadAttention(D, H).eval()
    ref.load_state_dict({k: v.float() for k, v in mha.state_dict().items()})
    torch.testing.assert_close(mha(x).float(), ref(x.float()), atol=0.1, rtol=0.05)


def test_return_attention_contract_and_dropout():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, 4, dropout=0.5)
    x = torch.randn(B, T, D)
    assert isinstance(mha.eval()(x), torch.Tensor)
    y, w = mha(x, return_attention=True)
    assert y.shape == (B, T, D) and w.shape == (B, 4, T, T)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, 4, T))
    mha.train()
    _, w_train = mha(x, return_attention=True)  # weights are shown before dropout
    torch.testing.assert_close(w_train.sum(-1), torch.ones(B, 4, T))
    assert not torch.allclose(mha(x), mha.eval()(x))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="embed_dim .*divisible by num_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(8, 0)
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(8, 2, dropout=1.5)
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    with pytest.raises(ValueError, match="attn_mask"):
        mha(x, attn_mask=torch.ones(T, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask"):
        mha(x, attn_mask=torch.ones(T, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask"):
        mha(x, attn_mask=torch.ones(T, T, dtype=torch.long))
    with pytest.raises(ValueError, match="key_mask"):
        mha(x, key_mask=torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_mask"):
        mha(x, key_mask=torch.ones(T, dtype=torch.bool))  # broadcasts, but is not (B, S)
    with pytest.raises(TypeError, match="key_mask"):
        mha(x, key_mask=torch.ones(B, T, dtype=torch.int64))
    with pytest.raises(ValueError, match="attn_mask"):  # broadcasts beyond (B, h, T, S)
        mha(x, attn_mask=torch.ones(3, B, H, T, T, dtype=torch.bool)[0].unsqueeze(0).expand(3, -1, -1, -1, -1)[:, 0])
    with pytest.raises(TypeError, match="query"):
        mha(torch.ones(B, T, D, dtype=torch.long))
    with pytest.raises(ValueError, match="query"):
        mha(torch.randn(B, T, D + 1))
    with pytest.raises(ValueError, match="query"):
        mha(torch.randn(T, D))
    with pytest.raises(TypeError, match="dtype"):
        mha(x, x.double(), x.double())
    with pytest.raises(ValueError, match="key and value"):
        mha(x, torch.randn(B, S, D), torch.randn(B, S + 1, D))
    with pytest.raises(ValueError, match="embed_dim"):
        SinusoidalPositionalEncoding(7)
    with pytest.raises(ValueError, match="max_len"):
        SinusoidalPositionalEncoding(D, max_len=4)(x)
    with pytest.raises(ValueError, match="max_len"):
        LearnedPositionalEncoding(D, max_len=4)(x)
    with pytest.raises(ValueError, match="x"):
        SelfAttention(D)(torch.randn(B, T, D + 1))
    with pytest.raises(ValueError, match="attn_mask"):
        SelfAttention(D)(x, attn_mask=torch.ones(T - 1, T - 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask"):
        SelfAttention(D)(x, attn_mask=torch.ones(T, T, dtype=torch.int32))


def test_positional_encodings():
    pe = SinusoidalPositionalEncoding(6, max_len=50)
    assert pe.pe.shape == (50, 6)
    t = torch.arange(50.0)
    torch.testing.assert_close(pe.pe[:, 0], torch.sin(t))
    torch.testing.assert_close(pe.pe[:, 1], torch.cos(t))
    torch.testing.assert_close(pe.pe[:, 4], torch.sin(t / 10000 ** (4 / 6)))
    x = torch.zeros(1, 10, 6)
    torch.testing.assert_close(pe(x)[0], pe.pe[:10])
    assert "pe" not in pe.state_dict()  # a fixed table, not saved
    learned = LearnedPositionalEncoding(6, max_len=12)
    assert learned.pe.requires_grad and learned(x).shape == (1, 10, 6)
    learned(x).sum().backward()
    assert torch.all(learned.pe.grad[:10] == 1) and torch.all(learned.pe.grad[10:] == 0)


# --- the chapters' data (attnlab.data, section "Chapters 2-3") -------------------------------

def test_sequence_tasks_are_seeded_and_correct():
    from attnlab import data

    x, y = data.reversal_task(5, length=7, vocab=4, seed=3)
    assert x.shape == y.shape == (5, 7) and int(x.max()) < 4
    assert torch.equal(y, x.flip(1)) and torch.equal(data.reversal_task(5, 7, 4, seed=3)[0], x)
    T = 9
    x, y = data.two_positions_task(4, length=T, offsets=(-1, 2), seed=0)
    assert y.shape == (4, T, 2) and set(x.unique().tolist()) <= {0, 1}
    for t in range(T):
        assert torch.equal(y[:, t, 0], x[:, (t - 1) % T]) and torch.equal(y[:, t, 1], x[:, (t + 2) % T])
    x, y = data.window_counts_task(4, length=T, window=3, seed=0)
    for t in range(T):
        before = sum(x[:, (t - j) % T] for j in (1, 2, 3))
        after = sum(x[:, (t + j) % T] for j in (1, 2, 3))
        assert torch.equal(y[:, t, 0], before) and torch.equal(y[:, t, 1], after)
    g = torch.Generator().manual_seed(0)
    assert data.window_counts_task(3, 12, 3, g)[0].shape == (3, 12)  # works as a fit() sampler


def test_sequence_task_errors():
    from attnlab import data

    with pytest.raises(ValueError, match="length"):
        data.reversal_task(2, length=0)
    with pytest.raises(ValueError, match="vocab"):
        data.reversal_task(2, vocab=1)
    with pytest.raises(ValueError, match="window"):
        data.window_counts_task(2, length=6, window=3)
    with pytest.raises(TypeError, match="seed"):
        data.two_positions_task(2, seed=1.5)


def test_a_variant_plugs_in_through_the_attention_seam():
    """Another normaliser is one function with the kernel's signature, not a copy of the class."""
    def mean_attention(q, k, v, mask=None, *, dropout_p=0.0, is_causal=False, return_attention=False):
        w = torch.full(q.shape[:-1] + (k.shape[-2],), 1.0 / k.shape[-2], dtype=q.dtype)  # uniform
        return (w @ v, w) if return_attention else w @ v

    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, attention=mean_attention).eval()
    x = torch.randn(B, T, D)
    y, w = mha(x, return_attention=True)
    assert w.shape == (B, H, T, T) and torch.allclose(w, torch.full_like(w, 1 / T))
    expected = mha.out_proj(mha.v_proj(x).mean(1, keepdim=True).expand(B, T, D))
    torch.testing.assert_close(y, expected)
    with pytest.raises(TypeError, match="attention must be a function"):
        MultiHeadAttention(D, H, attention="softmax")
