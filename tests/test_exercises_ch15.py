"""Chapter 15's checkers: chance levels, and one step of soft attention over annotations."""
import torch

from attnlab.exercises import check_attend_step, check_sat_chance
from attnlab.functional import additive_score, masked_softmax
from _feedback import wrong


def not_done(feedback):
    assert not feedback.ok and not feedback.done and feedback.startswith("Not done yet.")
    return True


def test_chance():
    assert check_sat_chance(1 / 200, 0.55).ok
    assert check_sat_chance(0.005, 0.1 + 0.9 * 0.5).ok
    assert wrong(check_sat_chance(1 / 13**3, 0.55), "all 13 words")
    assert wrong(check_sat_chance(1 / 12**3, 0.55), "other than <bos>")
    assert wrong(check_sat_chance(1 / 100, 0.55), "relation must be guessed")
    assert wrong(check_sat_chance(1 / 20, 0.55), "second digit")
    assert wrong(check_sat_chance(1 / 22, 0.55), "multiply")
    assert wrong(check_sat_chance(0.3, 0.55), "Multiply the chance")
    assert wrong(check_sat_chance(1 / 200), "Now give order_blind")
    assert wrong(check_sat_chance(1 / 200, 0.5), "equal", "above one half")
    assert wrong(check_sat_chance(1 / 200, 0.45), "add those")
    assert wrong(check_sat_chance(1 / 200, 0.6), "counted twice")
    assert wrong(check_sat_chance(1 / 200, 0.1), "blind guess")
    assert not_done(check_sat_chance(..., ...))
    assert not_done(check_sat_chance(1 / 200, ...))
    assert wrong(check_sat_chance([1, 2], 0.55), "should be a number")


def attend(h, a, w_h, w_a, w, mask=None, *, tanh=True, dim=-1, use_mask=True, invert=False,
           stable=True, blocked_rows=True):
    pre = (h @ w_h.T)[:, None] + a @ w_a.T
    e = (torch.tanh(pre) if tanh else pre) @ w
    if mask is not None and use_mask:
        e = e.masked_fill(mask if invert else ~mask, float("-inf"))
    if not stable:
        alpha = e.exp() / e.exp().sum(dim, keepdim=True)
    elif blocked_rows:                             # a row that sees nothing: zero weights
        alpha = torch.softmax(e, dim).nan_to_num(0.0)
    else:
        alpha = torch.softmax(e, dim)
    return alpha, (alpha[:, :, None] * a).sum(1)


def library(h, a, w_h, w_a, w, mask=None):
    alpha = masked_softmax(additive_score(h[:, None], a, w_h, w_a, w)[:, 0], mask)
    return alpha, torch.einsum("bl,bld->bd", alpha, a)


def test_attend_reference_passes():
    assert check_attend_step(library).ok
    feedback = check_attend_step(attend)
    assert feedback.ok and feedback.startswith("Correct!") and "9 cases" in feedback


def test_attend_mistakes_are_named():
    assert wrong(check_attend_step(lambda *a: attend(*a, dim=0)), "over the batch")
    assert wrong(check_attend_step(lambda *a: attend(*a, tanh=False)), "tanh is missing")
    assert wrong(check_attend_step(lambda *a: attend(*a, use_mask=False)), "mask is ignored")
    assert wrong(check_attend_step(lambda *a: attend(*a, invert=True)), "mask is inverted")
    assert wrong(check_attend_step(lambda *a: attend(*a, stable=False)),
                 "NaN or inf", "thousands")
    assert wrong(check_attend_step(lambda *a: attend(*a, blocked_rows=False)),
                 "NaN or inf", "fully masked", "zero weights")


def test_attend_shapes_and_stubs():
    assert wrong(check_attend_step(lambda *a: (library(*a)[0][:, None], library(*a)[1])),
                 "alpha: expected shape (2, 7), got (2, 1, 7)")
    assert wrong(check_attend_step(lambda *a: library(*a)[0]), "expected 2 result(s)")
    assert wrong(check_attend_step(42), "pass your function")

    def stub(h, a, w_h, w_a, w, mask=None):
        raise NotImplementedError
    assert not_done(check_attend_step(stub))
    assert not_done(check_attend_step(lambda *a: None))
