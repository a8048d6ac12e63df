"""Chapter 11's checkers: the reference passes; each typical mistake gets its own hint."""
import math

import torch

from attnlab.exercises import check_policy_variance, check_reinforce_grads
from _feedback import not_done, wrong


def test_policy_variance():
    for answer in (lambda sigma: 1 / sigma**2, 1 / 0.15**2, 44.44):
        feedback = check_policy_variance(answer)
        assert feedback.ok and feedback.startswith("Correct!") and "1/sigma^2" in feedback
    assert wrong(check_policy_variance(lambda sigma: 1 / sigma), "standard deviation")
    assert wrong(check_policy_variance(0.15**2), "variance of l itself")
    assert wrong(check_policy_variance(lambda sigma: sigma**-4), "Var(a X)")
    assert wrong(check_policy_variance(0), "mean of the estimate")
    assert wrong(check_policy_variance(lambda sigma: 2 / sigma**2), "expected 400", "Var(a X)")
    assert wrong(check_policy_variance(lambda sigma: 1 / 0), "ZeroDivisionError")
    assert wrong(check_policy_variance("1/sigma^2"), "should be a number")
    assert wrong(check_policy_variance(torch.ones(2)), "single number")
    assert not_done(check_policy_variance(...))


def reinforce(l, mu, sigma, reward, baseline, *, sign=1.0, detach=True, use_baseline=True,
              mean_over_steps=False, sigma_power=2, constant=0.0):
    """The hybrid loss's policy and baseline terms and their gradients, written out by hand."""
    B, T = baseline.shape
    advantage = reward[:, None] - baseline
    a = advantage if use_baseline else reward[:, None].expand(B, T)
    log_prob = -((l - mu) ** 2).sum(-1) / (2 * sigma**sigma_power) - constant
    n = B * T if mean_over_steps else B
    loss = -sign * (log_prob * a).sum() / n + (advantage**2).mean()
    grad_mu = -sign * a[..., None] * (l - mu) / (sigma**sigma_power * n)
    grad_b = -2 * advantage / (B * T) + (0.0 if detach else sign * log_prob / n)
    return loss, grad_mu, grad_b


def test_reinforce_reference_passes():
    feedback = check_reinforce_grads(reinforce)
    assert feedback.ok and feedback.startswith("Correct!") and "5 cases" in feedback


def test_reinforce_mistakes_are_named():
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a, sign=-1.0)), "wrong sign")
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a, detach=False)),
                 "grad_baseline", "trains the baseline", "detached")
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a, use_baseline=False)),
                 "advantage is R - b")
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a, mean_over_steps=True)),
                 "sums over the T")
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a, sigma_power=1)), "sigma^2")
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a, constant=math.log(
        2 * math.pi * a[2] ** 2))), "Drop the constant")


def test_reinforce_shapes_and_stubs():
    def transposed(*args):
        loss, grad_mu, grad_b = reinforce(*args)
        return loss, grad_mu, grad_b.T
    assert wrong(check_reinforce_grads(transposed), "expected shape (4, 2), got (2, 4)")
    assert wrong(check_reinforce_grads(lambda *a: reinforce(*a)[:2]), "expected 3 result(s)")
    assert wrong(check_reinforce_grads("my answer"), "pass your function")
    assert wrong(check_reinforce_grads(lambda *a: 1 / 0), "ZeroDivisionError")

    def stub(l, mu, sigma, reward, baseline):
        raise NotImplementedError
    assert not_done(check_reinforce_grads(stub))
    assert not_done(check_reinforce_grads(lambda *a: None))
