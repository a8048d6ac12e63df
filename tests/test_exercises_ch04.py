"""Chapter 4's checkers: the reference passes; each typical mistake gets its own hint."""
import math

import torch

from attnlab.exercises import check_eca_kernel, check_se_block
from _feedback import not_done, wrong


# --- Derive: ECA's kernel size -----------------------------------------------------------------

def eca_k(c, log=math.log2, b=1, odd="up", rounding=int):
    t = rounding(abs((log(c) + b) / 2))
    if t % 2:
        return t
    return t + 1 if odd == "up" else (t - 1 if odd == "down" else t)


def test_eca_formula_and_dict_pass():
    feedback = check_eca_kernel(eca_k)
    assert feedback.ok and feedback.startswith("Correct!") and "3, 5, 5, 5, 5, 7" in feedback
    assert check_eca_kernel({64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7}).ok


def test_eca_mistakes_are_named():
    assert wrong(check_eca_kernel(lambda c: eca_k(c, odd="none")), "must be odd", "C = 8")
    assert wrong(check_eca_kernel(lambda c: eca_k(c, odd="down")), "next odd number")
    assert wrong(check_eca_kernel(lambda c: eca_k(c, rounding=round)), "Truncate")
    assert wrong(check_eca_kernel(lambda c: eca_k(c, log=math.log)), "natural log")
    assert wrong(check_eca_kernel(lambda c: eca_k(c, b=0)), "offset is missing")
    assert wrong(check_eca_kernel(lambda c: max(3, eca_k(c))), "timm")
    assert wrong(check_eca_kernel({64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 5}),
                 "C = 2048: expected k = 7, got 5")


def test_eca_bad_answers():
    assert wrong(check_eca_kernel({64: 3}), "C = 128")
    assert wrong(check_eca_kernel(lambda c, r: 3), "TypeError")
    assert wrong(check_eca_kernel(lambda c: None), "should be a number")
    assert wrong(check_eca_kernel(5), "formula f(C)")
    assert not_done(check_eca_kernel(...))


# --- Build: an SE block from tensors -----------------------------------------------------------

def se(x, w1, b1, w2, b2, *, pool="mean", relu=True, gate="sigmoid", axis="channel"):
    if pool == "max":
        z = x.amax(dim=(2, 3))
    elif pool == "batch":
        z = x.mean(dim=(0, 2, 3)).expand(x.shape[0], -1)
    else:
        z = x.mean(dim=(2, 3))
    h = z @ w1.T + b1
    t = (torch.relu(h) if relu else h) @ w2.T + b2
    a = torch.sigmoid(t) if gate == "sigmoid" else torch.softmax(t, -1)
    return x * (a[:, :, None, None] if axis == "channel" else a[:, None, None, :])


def test_se_reference_passes():
    feedback = check_se_block(se)
    assert feedback.ok and feedback.startswith("Correct!") and "6 cases" in feedback


def test_se_mistakes_are_named():
    assert wrong(check_se_block(lambda *a: se(*a, pool="max")), "average")
    assert wrong(check_se_block(lambda *a: se(*a, gate="softmax")), "not a softmax")
    assert wrong(check_se_block(lambda *a: se(*a, relu=False)), "ReLU")
    assert wrong(check_se_block(lambda *a: se(*a, pool="batch")), "over the batch")
    assert wrong(check_se_block(lambda *a: se(*a, axis="width")), "wrong axis")


def test_se_shapes_and_stubs():
    assert wrong(check_se_block(lambda x, *a: se(x, *a).mean(dim=(2, 3))),
                 "expected shape (2, 8, 5, 8), got (2, 8)")
    assert wrong(check_se_block(lambda x, w1, b1, w2, b2: x.mean((2, 3)) @ w1),  # w1 not .T
                 "raised RuntimeError")
    assert wrong(check_se_block(3.0), "pass your function")

    def stub(x, w1, b1, w2, b2):
        raise NotImplementedError
    assert not_done(check_se_block(stub))
    assert not_done(check_se_block(...))
    assert not_done(check_se_block(lambda *a: None))
