"""Chapter 7's checkers: the reference passes; each typical mistake gets its own hint."""
import math

import torch

from attnlab.exercises import check_cost_memory, check_row_attention, check_video_axial_cost
from _feedback import not_done, wrong


def rows(x, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, num_heads, *, along="row", split="hd",
         scale=True, project=True):
    B, C, H, W = x.shape
    d = C // num_heads
    t = {"row": x.permute(0, 2, 3, 1),                          # (B, H, W, C): rows
         "column": x.permute(0, 3, 2, 1),                       # (B, W, H, C): columns
         "full": x.flatten(2).transpose(1, 2)[:, None]}[along]  # (B, 1, HW, C): everything
    lead = t.shape[:-1]

    def heads(u):
        u = u.unflatten(-1, (num_heads, d) if split == "hd" else (d, num_heads))
        return u.movedim(-2, 0) if split == "hd" else u.movedim(-1, 0)   # (h, ..., L, d)

    q, k, v = (heads(t @ w.T + b) for w, b in ((w_q, b_q), (w_k, b_k), (w_v, b_v)))
    s = q @ k.transpose(-2, -1) / (math.sqrt(d) if scale else 1.0)
    o = torch.softmax(s, -1) @ v                                # (h, ..., L, d)
    o = o.movedim(0, -2 if split == "hd" else -1).reshape(*lead, C)
    o = o @ w_o.T + b_o if project else o
    if along == "row":
        return o.permute(0, 3, 1, 2)
    if along == "column":
        return o.permute(0, 3, 2, 1)
    return o[:, 0].transpose(1, 2).reshape(B, C, H, W)


def test_row_attention_reference_passes():
    feedback = check_row_attention(rows)
    assert feedback.ok and feedback.startswith("Correct!") and "7 cases" in feedback


def test_row_attention_mistakes_are_named():
    assert wrong(check_row_attention(lambda *a: rows(*a, along="column")), "along the columns")
    assert wrong(check_row_attention(lambda *a: rows(*a, along="full")), "full attention")
    assert wrong(check_row_attention(lambda *a: rows(*a, split="dh")), "heads are split",
                 "c // d")
    assert wrong(check_row_attention(lambda *a: rows(*a, scale=False)), "not scaled")
    assert wrong(check_row_attention(lambda *a: rows(*a, project=False)),
                 "output projection is missing")
    assert wrong(check_row_attention(_scaled_by_c), "scale uses C")


def _scaled_by_c(x, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, num_heads):
    # dividing by sqrt(C) = dividing by sqrt(d) and then by sqrt(num_heads): shrink the queries
    f = 1 / math.sqrt(num_heads)
    return rows(x, w_q * f, b_q * f, w_k, b_k, w_v, b_v, w_o, b_o, num_heads)


def test_row_attention_shapes_and_stubs():
    assert wrong(check_row_attention(lambda *a: rows(*a).transpose(-1, -2)),
                 "expected shape (2, 8, 5, 7), got (2, 8, 7, 5)")
    assert wrong(check_row_attention(None), "pass your function")

    def stub(x, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, num_heads):
        raise NotImplementedError
    assert not_done(check_row_attention(stub))
    assert not_done(check_row_attention(lambda *a: None))
    assert wrong(check_row_attention(lambda *a: 1 / 0), "ZeroDivisionError")


def test_cost_memory():
    ok = check_cost_memory(1.0, 4 * 8 * 8 * 4096**2)
    assert ok.ok and "4 GiB" in ok, ok
    assert check_cost_memory(1.01, 4.1 * 2**30).ok                  # measured, so within a few %
    assert wrong(check_cost_memory(4, 4 * 8 * 8 * 4096**2), "4 heads")
    assert wrong(check_cost_memory(16, 4 * 8 * 8 * 4096**2), "4 * 4 * T^2")
    assert wrong(check_cost_memory(1, 4.0), "GiB", "bytes")
    assert wrong(check_cost_memory(1, 8 * 8 * 4096**2), "entries")
    assert wrong(check_cost_memory(1, 4 * 8 * 4096**2), "8 sequences and 8 heads")
    assert wrong(check_cost_memory(1, 4 * 8 * 8 * 1024**2), "16 times")
    assert wrong(check_cost_memory("one", 1), "should be a number")
    assert not_done(check_cost_memory(..., ...))


def test_video_axial_cost_stub_is_not_done():
    assert not_done(check_video_axial_cost(..., ...))
