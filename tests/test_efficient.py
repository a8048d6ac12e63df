"""Tests for attnlab.efficient: online softmax = softmax attention, separable attention = timm's,
linear attention's two orders agree, costs, errors."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _weights import random_qkv
from attnlab import functional as AF
from attnlab.efficient import (SeparableSelfAttention, attention_flops, linear_attention,
                               online_softmax_attention)

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
SHAPES = [((2,), 5, 12, 4, 6), ((2, 2), 12, 12, 8, 3)]  # (batch dims, T, S, d, d_v)


def make(shape, dtype=torch.float64, seed=0):
    return random_qkv(shape, dtype, seed)


def bool_mask(shape, seed=1):
    lead, T, S, *_ = shape
    mask = torch.rand(*lead, T, S, generator=torch.Generator().manual_seed(seed)) > 0.4
    mask[..., 0] = True  # torch's kernel returns NaN or 0 for empty rows by version
    return mask


# --- online softmax -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masking", ["none", "bool", "float", "causal"])
@pytest.mark.parametrize("block_size", [1, 4, 5, 64])  # 4 divides S = 12, 5 does not, 64 > S
def test_online_softmax_matches_torch_sdpa(dtype, shape, masking, block_size):
    q, k, v = make(shape, dtype)
    T, S = shape[1], shape[2]
    kwargs, ref_kwargs = {}, {}
    if masking == "bool":
        kwargs["mask"] = ref_kwargs["attn_mask"] = bool_mask(shape)
    elif masking == "float":  # (T, S), broadcast over the batch dimensions
        kwargs["mask"] = ref_kwargs["attn_mask"] = torch.randn(T, S, dtype=dtype)
    elif masking == "causal":
        kwargs["is_causal"] = True  # torch aligns top-left, the book bottom-right when T != S
        ref_kwargs = {"is_causal": True} if T == S else {"attn_mask": AF.causal_mask(T, S)}
    ours = online_softmax_attention(q, k, v, block_size=block_size, **kwargs)
    ref = F.scaled_dot_product_attention(q, k, v, **ref_kwargs)
    assert ours.dtype == dtype and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masking", ["bool", "causal"])
def test_online_softmax_gradients_match_torch_sdpa(dtype, masking):
    shape = ((2, 2), 12, 12, 8, 3)
    mask = bool_mask(shape) if masking == "bool" else None
    grads = []
    for fn in (lambda q, k, v: online_softmax_attention(q, k, v, mask, block_size=5,
                                                       is_causal=masking == "causal"),
               lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                              is_causal=masking == "causal")):
        q, k, v = (t.requires_grad_(True) for t in make(shape, dtype))
        out = fn(q, k, v)
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view(out.shape)).sum().backward()
        grads.append((q.grad, k.grad, v.grad))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("float_mask", [False, True])
def test_online_softmax_fully_blocked_row_gives_zeros_and_finite_gradients(float_mask):
    shape = ((2,), 5, 12, 4, 6)
    q, k, v = (t.requires_grad_(True) for t in make(shape))
    mask = bool_mask(shape)
    mask[:, 2, :] = False  # query 2 may see nothing
    mask[:, 3, :8] = False  # query 3 sees keys in the last block only
    if float_mask:
        mask = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, float("-inf"))
    out = online_softmax_attention(q, k, v, mask, block_size=4)
    assert out[:, 2].abs().max() == 0
    torch.testing.assert_close(out, AF.scaled_dot_product_attention(q, k, v, mask),
                               atol=1e-12, rtol=1e-12)
    out.sum().backward()
    assert all(bool(t.grad.isfinite().all()) for t in (q, k, v))
    assert q.grad[:, 2].abs().max() == 0


def test_online_softmax_is_stable_for_large_scores_and_uneven_causal():
    q, k, v = make(((2,), 6, 9, 4, 3), torch.float32)
    q = q * 300  # scores in the thousands: a naive exp overflows
    ref = AF.scaled_dot_product_attention(q, k, v, is_causal=True)  # T < S: bottom-right aligned
    out = online_softmax_attention(q, k, v, is_causal=True, block_size=2)
    assert bool(out.isfinite().all())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    q[0, 1, 0] = float("nan")  # a bad number is never hidden
    out = online_softmax_attention(q, k, v, block_size=2)
    assert bool(out[0, 1].isnan().all()) and bool(out[1].isfinite().all())


def test_online_softmax_costs_the_same_arithmetic_as_full_attention():
    n, d = 12, 4
    q, k, v = make(((3,), n, n, d, d), torch.float32)
    counts = {}
    for name, fn in (("full", lambda: AF.scaled_dot_product_attention(q, k, v,
                                                                        return_attention=True)),
                     ("online", lambda: online_softmax_attention(q, k, v, block_size=5)),
                     ("linear", lambda: linear_attention(q, k, v))):
        with FlopCounterMode(display=False) as counter:
            fn()
        counts[name] = counter.get_total_flops()  # 2 flops per multiply-add
        assert counts[name] == 2 * 3 * attention_flops(n, d, name)
    assert counts["online"] == counts["full"]


def test_online_softmax_bad_inputs():
    q, k, v = make(((2,), 5, 12, 4, 6), torch.float32)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        online_softmax_attention(q.tolist(), k, v)
    with pytest.raises(TypeError, match="k must be floating point"):
        online_softmax_attention(q, k.long(), v)
    with pytest.raises(TypeError, match="share a dtype"):
        online_softmax_attention(q, k, v.double())
    with pytest.raises(ValueError, match="q and k must share their last dimension"):
        online_softmax_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., S, d_v\)"):
        online_softmax_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match=r"q must have shape \(\.\.\., T, d\)"):
        online_softmax_attention(q[0, 0], k, v)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        online_softmax_attention(q, k, v, block_size=0)
    with pytest.raises(TypeError, match="block_size must be an int"):
        online_softmax_attention(q, k, v, block_size=2.5)
    with pytest.raises(TypeError, match="scale must be a number"):
        online_softmax_attention(q, k, v, scale="0.5")
    with pytest.raises(TypeError, match="mask must be bool"):
        online_softmax_attention(q, k, v, torch.ones(5, 12, dtype=torch.int64))
    with pytest.raises(ValueError, match="mask of shape"):
        online_softmax_attention(q, k, v, torch.ones(3, 5, 12, dtype=torch.bool))
    with pytest.raises(TypeError):
        online_softmax_attention(q, k, v, None, 4)  # block_size is keyword-only


# --- separable self-attention -------------------------------------------------------------------

def patches_to_sequences(x):
    B, C, P, N = x.shape
    return x.permute(0, 2, 3, 1).reshape(B * P, N, C)  # (B*P, N, C)


def sequences_to_patches(y, B, P):
    BP, N, C = y.shape
    return y.reshape(B, P, N, C).permute(0, 3, 1, 2)  # (B, C, P, N)


@pytest.mark.parametrize("bias", [True, False])
def test_separable_matches_timm(bias):
    mobilevit = pytest.importorskip("timm.models.mobilevit")
    torch.manual_seed(0)
    ref = mobilevit.LinearSelfAttention(8, bias=bias).double().eval()
    ours = SeparableSelfAttention.from_timm(ref)
    assert ours.score_proj.weight.dtype == torch.float64 and (ours.k_proj.bias is None) != bias
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)  # (B, C, P, N)
    y = sequences_to_patches(ours(patches_to_sequences(x)), 2, 4)
    torch.testing.assert_close(y, ref(x), atol=1e-12, rtol=1e-12)


def test_separable_applies_dropout_where_timm_does():
    mobilevit = pytest.importorskip("timm.models.mobilevit")
    torch.manual_seed(0)
    ref = mobilevit.LinearSelfAttention(8, attn_drop=0.5).double().train()
    ours = SeparableSelfAttention.from_timm(ref).train()
    assert ours.attn_drop == 0.5
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    torch.manual_seed(1)
    y_ref = ref(x)  # dropout on the context scores, (B, 1, P, N): same order as our (B*P, N)
    torch.manual_seed(1)
    y = sequences_to_patches(ours(patches_to_sequences(x)), 2, 4)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    assert not torch.allclose(y, ref.eval()(x))  # dropout did act


def test_separable_contract_and_properties():
    torch.manual_seed(0)
    m = SeparableSelfAttention(8).eval()
    x = torch.randn(3, 6, 8)
    y = m(x)
    y2, scores = m(x, return_attention=True)
    assert y.shape == x.shape and scores.shape == (3, 6)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(scores.sum(-1), torch.ones(3))  # a softmax over the tokens
    assert bool((scores > 0).all())
    with pytest.raises(TypeError):
        m(x, True)  # return_attention is keyword-only
    perm = torch.randperm(6)  # no positions: permuting the tokens permutes the outputs
    torch.testing.assert_close(m(x[:, perm]), y[:, perm], atol=1e-6, rtol=1e-5)
    x2 = x.clone()
    x2[:, -1] += 1.0  # every output depends on every token, through the context vector
    assert bool(((m(x2) - y)[:, 0].abs().sum(-1) > 0).all())
    assert m(torch.randn(0, 6, 8)).shape == (0, 6, 8) and m(torch.randn(2, 0, 8)).shape == (2, 0, 8)


def test_separable_bad_inputs():
    m = SeparableSelfAttention(8)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        m([[[1.0] * 8]])
    with pytest.raises(TypeError, match="x must be floating point"):
        m(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must have shape \(B, length, width\)"):
        m(torch.randn(5, 8))
    with pytest.raises(ValueError, match="width 8"):
        m(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="embed_dim must be >= 1"):
        SeparableSelfAttention(0)
    with pytest.raises(TypeError, match="embed_dim must be an int"):
        SeparableSelfAttention(2.5)
    with pytest.raises(ValueError, match="attn_drop must be in"):
        SeparableSelfAttention(8, attn_drop=1.0)
    with pytest.raises(TypeError, match="module must be timm's LinearSelfAttention"):
        SeparableSelfAttention.from_timm(torch.nn.Linear(8, 8))


# --- linear attention ---------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("feature_map", [None, lambda t: torch.cat([F.relu(t), F.relu(-t)], -1)])
def test_linear_attention_left_and_right_orders_agree(causal, feature_map):
    q, k, v = make(((2, 3), 7, 7, 4, 5))
    left = linear_attention(q, k, v, is_causal=causal, order="left", feature_map=feature_map)
    right = linear_attention(q, k, v, is_causal=causal, order="right", feature_map=feature_map)
    assert right.shape == (2, 3, 7, 5)
    torch.testing.assert_close(left, right, atol=1e-12, rtol=1e-12)


def test_linear_attention_by_hand():
    q, k, v = make(((), 3, 4, 2, 2))
    phi = lambda t: F.elu(t) + 1  # noqa: E731
    for causal in (False, True):
        kk, vv = (k[:3], v[:3]) if causal else (k, v)
        expected = torch.zeros(3, 2, dtype=q.dtype)
        for t in range(3):
            keys = range(t + 1) if causal else range(len(kk))
            sims = [float(phi(q[t]) @ phi(kk[s])) for s in keys]  # phi(q_t)^T phi(k_s) > 0
            expected[t] = sum(a * vv[s] for a, s in zip(sims, keys)) / (sum(sims) + 1e-6)
        for order in ("left", "right"):
            torch.testing.assert_close(linear_attention(q, kk, vv, is_causal=causal, order=order),
                                       expected, atol=1e-12, rtol=1e-12)
    first = linear_attention(q, k[:3], v[:3], is_causal=True)[0]  # sees only itself
    torch.testing.assert_close(first, v[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("order", ["left", "right"])
def test_causal_linear_attention_ignores_the_future(order):
    q, k, v = make(((2,), 8, 8, 4, 3))
    out = linear_attention(q, k, v, is_causal=True, order=order)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[:, 5:] = torch.randn(2, 3, t.shape[-1], dtype=t.dtype)
    out2 = linear_attention(q2, k2, v2, is_causal=True, order=order)
    torch.testing.assert_close(out2[:, :5], out[:, :5], atol=0, rtol=0)
    assert not torch.allclose(out2[:, 5:], out[:, 5:])


def test_linear_attention_bad_inputs():
    q, k, v = make(((2,), 5, 6, 4, 3))
    with pytest.raises(ValueError, match="order must be one of"):
        linear_attention(q, k, v, order="middle")
    with pytest.raises(TypeError, match="feature_map must be a function"):
        linear_attention(q, k, v, feature_map=3)
    with pytest.raises(ValueError, match="T == S"):
        linear_attention(q, k, v, is_causal=True)
    with pytest.raises(ValueError, match="eps must be a number >= 0"):
        linear_attention(q, k, v, eps=-1.0)
    with pytest.raises(TypeError, match="q must be floating point"):
        linear_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="q and k must share"):
        linear_attention(q, k[..., :2], v)
    with pytest.raises(TypeError):
        linear_attention(q, k, v, None, "left")  # everything after the mask is keyword-only


# --- costs --------------------------------------------------------------------------------------

def test_attention_flops():
    assert attention_flops(16, 4, "full") == attention_flops(16, 4, "online") == 2 * 16 * 16 * 4
    assert attention_flops(16, 4, "linear") == 2 * 16 * 16 + 16 * 4
    assert attention_flops(16, 4, "separable") == 2 * 16 * 4
    # linear attention is cheaper than full attention once the sequence is longer than d
    assert attention_flops(64, 16, "linear") < attention_flops(64, 16, "full")
    assert attention_flops(8, 16, "linear") > attention_flops(8, 16, "full")
    with pytest.raises(ValueError, match="method must be one of"):
        attention_flops(4, 4, "sparse")
    with pytest.raises(ValueError, match="n must be >= 1"):
        attention_flops(0, 4)
    with pytest.raises(TypeError, match="d must be an int"):
        attention_flops(4, 2.0)


def test_seam_variants_plug_into_multi_head_attention():
    """Online softmax and linear attention fit MultiHeadAttention's ``attention`` seam."""
    from attnlab.attention import MultiHeadAttention
    torch.manual_seed(0)
    x, mem = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 7, 8, dtype=torch.float64)
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, -3:] = False
    exact = MultiHeadAttention(8, 2).double()
    online = MultiHeadAttention(8, 2, attention=online_softmax_attention).double()
    online.load_state_dict(exact.state_dict())
    y, w = exact(x, mem, key_mask=real, return_attention=True)
    y2, w2 = online(x, mem, key_mask=real, return_attention=True)
    torch.testing.assert_close(y2, y, atol=1e-12, rtol=0)
    torch.testing.assert_close(w2, w, atol=1e-12, rtol=0)  # recomputed weights, padding at 0
    lin = MultiHeadAttention(8, 2, attention=linear_attention).double()
    lin.load_state_dict(exact.state_dict())
    y3, w3 = lin(x, mem, key_mask=real, return_attention=True)
    assert y3.shape == y.shape and w3.shape == w.shape
    assert torch.all(w3[1, :, :, -3:] == 0)
    torch.testing.assert_close(w3.sum(-1), torch.ones(2, 2, 5, dtype=torch.float64), atol=1e-5,
                               rtol=0)
    # padding leaves the output exactly as if the padded keys were not there
    torch.testing.assert_close(lin(x[1:], mem[1:, :4]), y3[1:], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="dropout_p must be 0"):
        MultiHeadAttention(8, 2, dropout=0.1, attention=linear_attention).train()(x.float())


def test_linear_attention_masks():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 3), torch.randn(2, 6, 3), torch.randn(2, 6, 5)
    allowed = torch.rand(4, 6) > 0.4
    allowed[:, 0] = True
    left, w = linear_attention(q, k, v, allowed, order="left", return_attention=True)
    assert torch.all(w[..., ~allowed] == 0)
    with pytest.raises(ValueError, match="key mask only"):
        linear_attention(q, k, v, allowed, order="right")
    with pytest.raises(TypeError, match="boolean"):
        linear_attention(q, k, v, allowed.float())


# --- bad input and edge cases, one class at a time (issue #28) -------------------------------

_q, _k, _v = make(((2,), 5, 6, 4, 3))


@pytest.mark.parametrize("call, error, words", [
    (lambda: online_softmax_attention(_q, _k, _v, scale=float("nan")), ValueError,
     "scale must be a finite number"),
    (lambda: online_softmax_attention(_q, _k, _v, block_size=True), TypeError,
     "block_size must be an int"),
    (lambda: online_softmax_attention(_q, _k, _v, dropout_p=0.1), ValueError, "dropout_p must be 0"),
    (lambda: linear_attention(_q, _k, _v, eps=float("nan")), ValueError, "eps must be a finite"),
    (lambda: linear_attention(_q, _k, _v, eps="1e-6"), TypeError, "eps must be a number"),
    (lambda: linear_attention(_q, _k, _v, feature_map=lambda t: t[..., :1, :]), ValueError,
     "feature_map must map q"),
    (lambda: linear_attention(_q, _k, _v, feature_map=lambda t: t.tolist()), ValueError,
     "feature_map must map q"),
    (lambda: linear_attention(_q, _k, _v, torch.ones(6)), TypeError, "mask must be boolean"),
    (lambda: linear_attention(_q, _k, _v, torch.ones(3, 5, 6, dtype=torch.bool)), ValueError,
     "mask of shape"),
    (lambda: linear_attention(_q, _k, _v, order=3), ValueError, "order must be one of"),
    (lambda: linear_attention(_q, _k, _v, dropout_p=0.5), ValueError, "dropout_p must be 0"),
    (lambda: SeparableSelfAttention(8, attn_drop=-1), ValueError, "attn_drop must be in"),
    (lambda: attention_flops(4, 4, ["full"]), ValueError, "method must be one of"),
    (lambda: attention_flops(4.0, 4), TypeError, "n must be an int"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


@pytest.mark.parametrize("B", [1, 2])
def test_right_order_keeps_its_shape_with_causal_weights(B):
    """Issue #28: right order, is_causal and return_attention gave (T, T, d_v) for B = 1 (the
    causal mask replaced the key mask) and a RuntimeError for B = 2."""
    q, k, v = make(((B,), 5, 5, 4, 3))
    keep = torch.tensor([True, True, False, True, True])
    for mask in (None, keep, keep[None]):
        out, w = linear_attention(q, k, v, mask, is_causal=True, return_attention=True)
        left = linear_attention(q, k, v, mask, is_causal=True, order="left")
        assert out.shape == (B, 5, 3) and w.shape == (B, 5, 5)
        torch.testing.assert_close(out, left, atol=1e-12, rtol=0)
        assert torch.all(w.triu(1) == 0)  # causal weights


def test_a_query_with_no_key_gets_zeros_never_nan():
    q, k, v = make(((1,), 3, 4, 2, 2))
    none = torch.zeros(1, 1, 4, dtype=torch.bool)  # every key blocked
    for order in ("left", "right"):
        out = linear_attention(q, k, v, none, order=order, eps=0.0)
        assert torch.equal(out, torch.zeros_like(out))
    out, w = online_softmax_attention(q, k[:, :0], v[:, :0], return_attention=True)  # no keys
    assert out.shape == (1, 3, 2) and w.shape == (1, 3, 0) and torch.all(out == 0)
