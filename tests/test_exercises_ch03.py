"""Chapter 3's checkers: the reference passes; each typical mistake gets its own hint."""
import math

import torch

from attnlab.exercises import check_mha, check_mha_params
from _feedback import not_done, wrong


# --- Derive: the parameter count ---------------------------------------------------------------

def test_params_formula_and_dict_pass():
    feedback = check_mha_params(lambda D, h: 4 * D * D + 4 * D)
    assert feedback.ok and feedback.startswith("Correct!") and "12 cases" in feedback
    assert check_mha_params({h: 4 * 512**2 + 4 * 512 for h in (1, 2, 4, 8)}).ok
    assert check_mha_params({h: 4 * 64**2 + 4 * 64 for h in (1, 2, 4, 8)}, embed_dim=64).ok


def test_params_mistakes_are_named():
    assert wrong(check_mha_params(lambda D, h: 4 * D * D), "weights only", "1,088")
    assert wrong(check_mha_params(lambda D, h: 4 * D * D + 3 * D), "output projection")
    assert wrong(check_mha_params(lambda D, h: 3 * D * D + 3 * D), "W^O is missing")
    assert wrong(check_mha_params(lambda D, h: 3 * h * D * D + 3 * h * D + h * D * D + D),
                 "its own D x D", "h = 2")
    assert wrong(check_mha_params(lambda D, h: 4 * D * (D // h) + 4 * (D // h)),
                 "one head's share")
    assert wrong(check_mha_params({h: 1000 for h in (1, 2, 4, 8)}),
                 "expected 1,050,624", "Count W^Q")


def test_params_bad_answers():
    assert wrong(check_mha_params({1: 3}), "h = 2, 4, 8")
    assert wrong(check_mha_params(lambda D: 1), "TypeError", "(D, h)")
    assert wrong(check_mha_params(lambda D, h: "many"), "should be a number")
    assert wrong(check_mha_params(1088), "formula f(D, h)")
    assert not_done(check_mha_params(...))


# --- Build: multi-head attention against nn.MultiheadAttention ----------------------------------

def mha(x, w_in, b_in, w_out, b_out, h, key_mask=None, *, order="bthd", scale=None, mask=True,
        project=True, bias=True, stable=True):
    B, T, D = x.shape
    d = D // h
    q, k, v = (x @ w_in.T + (b_in if bias else 0)).chunk(3, -1)
    if order == "bthd":
        split = lambda t: t.reshape(B, T, h, d).transpose(1, 2)  # noqa: E731
        merge = lambda t: t.transpose(1, 2).reshape(B, T, D)  # noqa: E731
    else:                                                       # (B, T, d, h): interleaved
        split = lambda t: t.reshape(B, T, d, h).permute(0, 3, 1, 2)  # noqa: E731
        merge = lambda t: t.permute(0, 2, 3, 1).reshape(B, T, D)  # noqa: E731
    s = split(q) @ split(k).transpose(-2, -1) / math.sqrt(scale or d)
    if key_mask is not None and mask:
        s = s.masked_fill(~(key_mask if mask is True else ~key_mask)[:, None, None, :],
                          float("-inf"))
    if stable:
        w = torch.softmax(s, -1)
    else:
        e = s.exp()
        w = e / e.sum(-1, keepdim=True)
    out = merge(w @ split(v))
    return (out @ w_out.T + b_out if project else out), w


def test_mha_reference_passes():
    feedback = check_mha(mha)
    assert feedback.ok and feedback.startswith("Correct!") and "7 cases" in feedback


def test_mha_mistakes_are_named():
    assert wrong(check_mha(lambda *a: mha(*a, order="btdh")), "wrong order", "(B, T, h, d)")
    assert wrong(check_mha(lambda x, *a: mha(x, *a, scale=x.shape[-1])), "sqrt(D/h)")
    assert wrong(check_mha(lambda *a: mha(*a, mask=False)), "key_mask is ignored",
                 "with a key_mask")
    assert wrong(check_mha(lambda *a: mha(*a, mask="inverted")), "inverted")
    assert wrong(check_mha(lambda *a: mha(*a, project=False)), "output projection is missing")
    assert wrong(check_mha(lambda *a: mha(*a, bias=False)), "in_proj_bias")
    assert wrong(check_mha(lambda *a: mha(*a, stable=False)), "NaN or inf", "std 30")


def test_mha_shapes_and_stubs():
    assert wrong(check_mha(lambda *a: (mha(*a)[0], mha(*a)[1].mean(1))),
                 "weights: expected shape (2, 2, 5, 5), got (2, 5, 5)")
    assert wrong(check_mha(lambda *a: mha(*a)[0]), "expected 2 result(s)")
    assert wrong(check_mha(torch.nn.MultiheadAttention(8, 2)), "raised")
    assert wrong(check_mha("mha"), "pass your function")

    def stub(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads,
             key_mask=None):
        raise NotImplementedError
    assert not_done(check_mha(stub))
    assert not_done(check_mha(...))
