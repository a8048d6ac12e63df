"""Chapter 10's checkers: the reference passes; each typical mistake gets its own hint."""
import torch

from attnlab.exercises import check_rollout, check_uniform_rollout
from _feedback import not_done, wrong


def rollout(attentions, head_fusion="mean", residual=True, *, fusion=None, order="left",
            renormalise="rows", add_identity=None):
    fusion = head_fusion if fusion is None else fusion
    add_identity = residual if add_identity is None else add_identity
    rolled = None
    for a in attentions:
        a = a.mean(1) if fusion == "mean" else a.max(1).values
        if add_identity:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype)
            if renormalise == "rows":
                a = a / a.sum(-1, keepdim=True)
            elif renormalise == "half":
                a = 0.5 * a
        if rolled is None:
            rolled = a
        else:
            rolled = a @ rolled if order == "left" else rolled @ a
    return rolled


def test_rollout_reference_passes():
    feedback = check_rollout(rollout)
    assert feedback.ok and feedback.startswith("Correct!") and "8 cases" in feedback


def test_rollout_mistakes_are_named():
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, order="right")),
                 "wrong order", "on the left")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, add_identity=False)),
                 "residual is missing")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, renormalise=None)),
                 "not renormalised")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, renormalise="half")),
                 "(A + I) / 2", "max fusion", "head_fusion='max'")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, fusion="max")),
                 "maximum where head_fusion='mean'")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, fusion="mean")),
                 "not their mean")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r, add_identity=True)),
                 "residual=False", "no identity")
    assert wrong(check_rollout(lambda a, f, r: rollout(a[:1], f, r)), "off by")


def test_rollout_shapes_and_stubs():
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r)[:, 0]),
                 "expected shape (2, 5, 5), got (2, 5)")
    assert wrong(check_rollout(lambda a, f, r: rollout(a, f, r).numpy()), "should be a tensor")
    assert wrong(check_rollout(lambda a, f, r: a[7]), "IndexError")
    assert wrong(check_rollout("rollout"), "pass your function")

    def stub(attentions, head_fusion="mean", residual=True):
        raise NotImplementedError
    assert not_done(check_rollout(stub))
    assert not_done(check_rollout(lambda *a: None))


def test_uniform_rollout():
    feedback = check_uniform_rollout(0.25 + 0.75 / 26)
    assert feedback.ok and feedback.startswith("Correct!") and "0.2788" in feedback
    assert check_uniform_rollout(torch.tensor(0.2788462)).ok
    assert check_uniform_rollout(1 / 8 + 7 / 80, layers=3, tokens=10).ok
    assert wrong(check_uniform_rollout(1 / 26), "without the residual")
    assert wrong(check_uniform_rollout(0.25), "add (1 - 2^-L) / N")
    assert wrong(check_uniform_rollout(0.5 + 0.5 / 26), "one layer")
    assert wrong(check_uniform_rollout(0.75 / 26), "each other token")
    assert wrong(check_uniform_rollout(0.25 + 1 / 26), "not 1")
    assert wrong(check_uniform_rollout(0.3), "U^2 = U")
    assert wrong(check_uniform_rollout("0.28"), "should be a number")
    assert wrong(check_uniform_rollout(torch.ones(3)), "single number")
    assert not_done(check_uniform_rollout(...))
