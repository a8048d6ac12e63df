"""attnlab.functional: parity with PyTorch's fused kernel, properties, hostile inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from _weights import random_qkv
from attnlab import functional as AF

SHAPES = [  # (batch dims, T, S, d, dv)
    ((), 1, 1, 1, 1),
    ((2,), 3, 5, 4, 6),
    ((2, 3), 7, 4, 8, 2),
    ((1, 4), 16, 16, 32, 32),
]


def make(shape, dtype=torch.float32, seed=0):
    return random_qkv(shape, dtype, seed)


def random_bool_mask(shape, seed=1, p=0.3):
    lead, T, S, *_ = shape
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*lead, T, S, generator=g) > p


TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masking", ["none", "bool", "float", "causal"])
def test_parity_with_torch_sdpa(shape, dtype, masking):
    q, k, v = make(shape, dtype)
    kwargs = {}
    if masking == "bool":
        kwargs["mask"] = random_bool_mask(shape)
        kwargs["mask"][..., 0] = True  # torch's kernel returns NaN or 0 for empty rows by version
    elif masking == "float":
        kwargs["mask"] = torch.randn(q.shape[:-1] + (k.shape[-2],), dtype=dtype)
    ref_kwargs = {"attn_mask": kwargs.get("mask")}
    if masking == "causal":
        kwargs["is_causal"] = True
        # torch aligns is_causal top-left when T != S; ours aligns the queries with the last keys
        ref_kwargs = {"is_causal": True} if shape[1] == shape[2] else {
            "attn_mask": torch.ones(shape[1], shape[2], dtype=torch.bool).tril(shape[2] - shape[1])}
    ref = F.scaled_dot_product_attention(q, k, v, **ref_kwargs)
    fused = AF.scaled_dot_product_attention(q, k, v, **kwargs)
    explicit, w = AF.scaled_dot_product_attention(q, k, v, **kwargs, return_attention=True)
    tol = TOL[dtype]
    assert fused.dtype == explicit.dtype == dtype
    torch.testing.assert_close(fused, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(explicit, ref, atol=tol, rtol=tol)
    assert w.shape == q.shape[:-1] + (k.shape[-2],)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_rows_sum_to_one_and_masked_weights_are_exactly_zero(shape):
    q, k, v = make(shape)
    mask = random_bool_mask(shape)
    mask[..., 0] = True
    _, w = AF.scaled_dot_product_attention(q, k, v, mask, return_attention=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    assert (w[~mask] == 0).all()
    assert (w >= 0).all()


def test_explicit_path_is_the_three_steps():
    q, k, v = make(((2,), 3, 5, 4, 6), torch.float64)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), -1)
    out, weights = AF.scaled_dot_product_attention(q, k, v, return_attention=True)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(out, w @ v)


def test_custom_scale_matches_torch():
    q, k, v = make(((2,), 3, 5, 4, 6))
    ref = F.scaled_dot_product_attention(q, k, v, scale=0.1)
    torch.testing.assert_close(AF.scaled_dot_product_attention(q, k, v, scale=0.1), ref)
    torch.testing.assert_close(AF.scaled_dot_product_attention(q, k, v, scale=0.1, return_attention=True)[0], ref)


@pytest.mark.parametrize("return_attention", [False, True])
def test_fully_masked_rows_give_zeros_not_nan(return_attention):
    q, k, v = make(((2,), 4, 5, 3, 2))
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1] = False
    res = AF.scaled_dot_product_attention(q, k, v, mask, return_attention=return_attention)
    out = res[0] if return_attention else res
    assert torch.isfinite(out).all()
    assert (out[:, 1] == 0).all()
    assert (out[:, 0] != 0).any()
    if return_attention:
        assert (res[1][:, 1] == 0).all()


def test_fully_masked_rows_with_float_minus_inf_mask():
    q, k, v = make(((1,), 3, 4, 2, 2))
    mask = torch.zeros(3, 4)
    mask[2] = float("-inf")
    for ra in (False, True):
        res = AF.scaled_dot_product_attention(q, k, v, mask, return_attention=ra)
        out = res[0] if ra else res
        assert torch.isfinite(out).all() and (out[:, 2] == 0).all()


def test_masked_softmax_handles_all_minus_inf_scores_without_a_mask():
    s = torch.tensor([[0.0, 1.0], [-math.inf, -math.inf]])
    w = AF.masked_softmax(s)
    assert torch.equal(w[1], torch.zeros(2))
    torch.testing.assert_close(w[0], torch.softmax(s[0], -1))


@pytest.mark.parametrize("return_attention", [False, True])
def test_huge_logits_stay_finite(return_attention):
    q, k, v = make(((2,), 4, 6, 8, 3))
    q = q * 1e4
    res = AF.scaled_dot_product_attention(q, k, v, return_attention=return_attention)
    out = res[0] if return_attention else res
    assert torch.isfinite(out).all()
    if return_attention:
        torch.testing.assert_close(res[1].sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("return_attention", [False, True])
def test_half_precision_is_finite_and_close_to_float32(dtype, return_attention):
    q, k, v = make(((2,), 5, 7, 16, 4))
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[0] = False
    mask[2, 3:] = False
    res = AF.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask,
                                          return_attention=return_attention)
    out = res[0] if return_attention else res
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = AF.scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    big = AF.scaled_dot_product_attention((q * 300).to(dtype), k.to(dtype), v.to(dtype), mask,
                                          return_attention=return_attention)
    assert torch.isfinite(big[0] if return_attention else big).all()


@pytest.mark.parametrize("return_attention", [False, True])
def test_gradients_are_finite_even_with_fully_masked_rows(return_attention):
    q, k, v = (t.requires_grad_() for t in make(((2,), 4, 5, 3, 2), torch.float64))
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[3] = False
    res = AF.scaled_dot_product_attention(q, k, v, mask, return_attention=return_attention)
    out = res[0] if return_attention else res
    out.square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, 3] == 0).all()


def test_gradcheck_explicit_path():
    q, k, v = (t.requires_grad_() for t in make(((1,), 3, 4, 2, 2), torch.float64))
    mask = torch.tensor([[True, True, False, True], [True, False, False, False], [True] * 4])
    assert torch.autograd.gradcheck(
        lambda a, b, c: AF.scaled_dot_product_attention(a, b, c, mask, return_attention=True)[0], (q, k, v))


def test_causal_mask():
    m = AF.causal_mask(3)
    assert torch.equal(m, torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    m2 = AF.causal_mask(2, 4)  # queries are the last two of four positions
    assert torch.equal(m2, torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="T must be >= 1"):
        AF.causal_mask(0)


def test_is_causal_combines_with_a_padding_mask():
    q, k, v = make(((1,), 4, 4, 3, 2))
    pad = torch.tensor([True, True, True, False])
    _, w = AF.scaled_dot_product_attention(q, k, v, pad, is_causal=True, return_attention=True)
    assert (w[0].triu(1) == 0).all() and (w[..., 3] == 0).all()
    torch.testing.assert_close(AF.scaled_dot_product_attention(q, k, v, pad, is_causal=True), w @ v)


def test_score_functions():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    torch.testing.assert_close(AF.dot_product_score(q, k), torch.einsum("btd,bsd->bts", q, k))
    torch.testing.assert_close(AF.scaled_dot_product_score(q, k), AF.dot_product_score(q, k) / 2)
    cos = AF.cosine_score(q, k, temperature=0.5)
    ref = F.cosine_similarity(q[:, :, None], k[:, None], dim=-1) / 0.5
    torch.testing.assert_close(cos, ref)
    assert cos.abs().max() <= 2 + 1e-6
    w_q, w_k, w_v = torch.randn(6, 4, generator=g), torch.randn(6, 7, generator=g), torch.randn(6, generator=g)
    k7 = torch.randn(2, 5, 7, generator=g)
    add = AF.additive_score(q, k7, w_q, w_k, w_v)
    b, t, s = 1, 2, 3
    manual = w_v @ torch.tanh(w_q @ q[b, t] + w_k @ k7[b, s])
    assert add.shape == (2, 3, 5)
    torch.testing.assert_close(add[b, t, s], manual)


@pytest.mark.parametrize("bad, match", [
    (dict(k=torch.randn(2, 5, 3)), "last dimension d"),
    (dict(v=torch.randn(2, 4, 6)), "v must have shape"),
    (dict(q=torch.randn(4)), "q must have shape"),
    (dict(mask=torch.ones(3, 4, dtype=torch.bool)), "does not broadcast"),
    (dict(dropout_p=1.5), "dropout_p"),
])
def test_clear_value_errors(bad, match):
    args = dict(q=torch.randn(2, 3, 4), k=torch.randn(2, 5, 4), v=torch.randn(2, 5, 6))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        AF.scaled_dot_product_attention(**args)


@pytest.mark.parametrize("bad, match", [
    (dict(mask=torch.ones(3, 5, dtype=torch.int64)), "mask must be bool"),
    (dict(mask=[[True] * 5] * 3), "mask must be a torch.Tensor"),
    (dict(q=[[1.0]]), "q must be a torch.Tensor"),
    (dict(v=torch.randn(2, 5, 6, dtype=torch.float64)), "share a dtype"),
])
def test_clear_type_errors(bad, match):
    args = dict(q=torch.randn(2, 3, 4), k=torch.randn(2, 5, 4), v=torch.randn(2, 5, 6))
    args.update(bad)
    with pytest.raises(TypeError, match=match):
        AF.scaled_dot_product_attention(**args)


def test_score_function_errors():
    with pytest.raises(ValueError, match="temperature"):
        AF.cosine_score(torch.randn(2, 3), torch.randn(4, 3), temperature=0)
    with pytest.raises(ValueError, match="w_q must have shape"):
        AF.additive_score(torch.randn(2, 3), torch.randn(4, 5), torch.randn(6, 4), torch.randn(6, 5), torch.randn(6))
    with pytest.raises(ValueError, match="must share d_h"):
        AF.additive_score(torch.randn(2, 3), torch.randn(4, 5), torch.randn(6, 3), torch.randn(7, 5), torch.randn(6))
    with pytest.raises(TypeError, match="scores"):
        AF.masked_softmax(torch.ones(2, 3, dtype=torch.long))


# --- bad input that used to come back as a plausible answer ----------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_a_mask_must_broadcast_to_the_scores_not_beyond(fused):
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    beyond = torch.ones(4, 2, 3, 5, dtype=torch.bool)  # would make the output (4, 2, 3, 6)
    with pytest.raises(ValueError, match="mask of shape"):
        AF.scaled_dot_product_attention(q, k, v, beyond, return_attention=not fused)
    ok = torch.ones(3, 5, dtype=torch.bool)
    out = AF.scaled_dot_product_attention(q, k, v, ok, return_attention=not fused)
    assert (out if fused else out[0]).shape == (2, 3, 6)


def test_nan_scores_are_never_hidden():
    scores = torch.tensor([[float("nan"), 1.0], [0.0, 1.0]])
    w = AF.masked_softmax(scores)
    assert torch.isnan(w[0]).all() and torch.isfinite(w[1]).all()
    blocked = AF.masked_softmax(torch.full((1, 3), float("-inf")))  # all blocked: zeros
    assert torch.equal(blocked, torch.zeros(1, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cosine_score_of_a_zero_vector_is_finite_in_half_precision(dtype):
    q = torch.zeros(1, 4, dtype=dtype)
    k = torch.randn(3, 4).to(dtype)
    s = AF.cosine_score(q, k)
    assert s.dtype == dtype and torch.equal(s, torch.zeros(1, 3, dtype=dtype))


def test_leading_dimensions_must_broadcast_and_inputs_be_float():
    with pytest.raises(ValueError, match="leading dimensions"):
        AF.scaled_dot_product_attention(torch.randn(2, 3, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    with pytest.raises(TypeError, match="q must be floating point"):
        AF.scaled_dot_product_attention(torch.ones(3, 4, dtype=torch.long), torch.randn(5, 4),
                                        torch.randn(5, 4))
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        AF.dot_product_score([[1.0]], torch.randn(1, 1))
