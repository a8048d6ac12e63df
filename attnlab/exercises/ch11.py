"""Checkers for Chapter 11, hard attention."""
from __future__ import annotations

import math

import torch

from ._core import AUTOGRAD, Feedback, fresh_points, as_number, check_build, checker, diagnose, fmt, generator

__all__ = ['check_policy_variance', 'check_reinforce_grads']


# --- Derive: the variance of one REINFORCE sample ----------------------------------------------

_SIGMAS = (0.05, 0.15, 0.5, 1.0, 2.0)


def _score_variance(sigma: float) -> float:
    """Var[(l - mu) / sigma^2] for l ~ N(mu, sigma^2): Var(l) / sigma^4, with Var(l) = sigma^2."""
    return sigma**2 / sigma**4


@checker("ex-hard-sigma")
def check_policy_variance(answer) -> Feedback:
    r"""Exercise :ref:`ex-hard-sigma`: the variance of the estimate :math:`R (l - \mu)/\sigma^2`
    with :math:`R = 1` and :math:`l \sim \mathcal N(\mu, \sigma^2)`.

    ``answer`` is a formula ``f(sigma)`` (checked at several :math:`\sigma`) or a number, the
    variance at the recurrent model's :math:`\sigma` (``RecurrentAttention().std``, 0.15). The
    variance is :math:`\sigma^2 / \sigma^4 = 1/\sigma^2`.
    """
    from attnlab.glimpse import RecurrentAttention

    if callable(answer):
        sigmas = fresh_points(_SIGMAS, lambda r: round(r.uniform(0.02, 3.0), 3))
    else:
        sigmas = (RecurrentAttention().std,)
    for sigma in sigmas:
        if callable(answer):
            try:
                got = answer(sigma)
            except Exception as e:  # noqa: BLE001 - the learner's code: report it
                return Feedback(False, f"your formula raised {type(e).__name__}: {e} for sigma = "
                                       f"{sigma:g}. It should take sigma and return a number.")
            name = f"f({sigma:g})"
        else:
            got, name = answer, f"the variance at sigma = {sigma:g}"
        got = as_number(got, name)
        if isinstance(got, Feedback):
            return got
        expected = _score_variance(sigma)
        hint = diagnose(got, expected, [
            (1 / sigma, "1/sigma is the standard deviation of the estimate; the variance is its "
                        "square."),
            (sigma**2, "sigma^2 is the variance of l itself; the estimate divides l - mu by "
                       "sigma^2, which divides the variance by sigma^4."),
            (1 / sigma**4, "Var(a X) = a^2 Var(X): with a = 1/sigma^2 that is Var(l) / sigma^4, "
                           "and Var(l) = sigma^2 is not 1."),
            (0.0, "0 is the mean of the estimate (the true gradient is zero here), not its "
                  "variance."),
        ], rel=1e-3)
        if hint is not None:
            return Feedback(False, f"{name}: expected {fmt(expected)}, got {fmt(got)}. "
                            + (hint or "Write the estimate as (l - mu)/sigma^2 with "
                                       "l - mu ~ N(0, sigma^2) and use Var(a X) = a^2 Var(X)."))
    return Feedback(True, f"the variance is 1/sigma^2 ({fmt(_score_variance(0.15))} at sigma = "
                          "0.15): it grows without bound as the policy stops exploring.")


# --- Build: the gradients of the hybrid loss ---------------------------------------------------

def _hybrid(l, mu, sigma, reward, baseline, *, sign=1.0, detach=True, use_baseline=True,
            per_step_mean=False, sigma_power=2, constant=False):
    """The policy and baseline terms of the hybrid loss, and their gradients by autograd.

    The keywords switch on one typical mistake each (the defaults are the right loss)."""
    with torch.enable_grad():
        mu = mu.detach().clone().requires_grad_(True)
        b = baseline.detach().clone().requires_grad_(True)
        log_prob = -((l - mu) ** 2).sum(-1) / (2 * sigma**sigma_power)        # (B, T)
        if constant:
            log_prob = log_prob - math.log(2 * math.pi * sigma**2)          # two coordinates
        advantage = reward[:, None] - ((b.detach() if detach else b) if use_baseline else 0.0)
        terms = log_prob * advantage
        policy = -(terms.mean() if per_step_mean else terms.sum(1).mean())
        loss = sign * policy + ((reward[:, None] - b) ** 2).mean()
        grad_mu, grad_b = torch.autograd.grad(loss, (mu, b))
    return loss.detach(), grad_mu, grad_b


def _reinforce_cases():
    """Random rewards, every reward 1, every reward 0, one sample, a baseline equal to R."""
    g = generator(0)
    for B, T, sigma, rewards in ((4, 2, 0.15, "random"), (1, 1, 0.5, "random"),
                                 (7, 3, 1.0, "all 1"), (5, 4, 0.15, "all 0"),
                                 (3, 2, 0.15, "baseline = R")):
        mu = torch.rand(B, T, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8
        l = mu + sigma * torch.randn(B, T, 2, generator=g, dtype=torch.float64)
        reward = (torch.rand(B, generator=g) > 0.4).double()
        if rewards == "all 1":
            reward = torch.ones(B, dtype=torch.float64)
        elif rewards == "all 0":
            reward = torch.zeros(B, dtype=torch.float64)
        baseline = torch.rand(B, T, generator=g, dtype=torch.float64)
        if rewards == "baseline = R":
            baseline = reward[:, None].repeat(1, T)
        yield (f"B = {B}, {T} sampled location(s), sigma = {sigma:g}, rewards {rewards}",
               (l, mu, sigma, reward, baseline))


def _library_reference(l, mu, sigma, reward, baseline):
    """attnlab.glimpse.reinforce_loss on the same samples; its gradients by autograd."""
    from attnlab.glimpse import reinforce_loss

    B, T, K = len(reward), baseline.shape[1], 10
    y = torch.arange(B) % K
    answer = torch.where(reward > 0, y, (y + 1) % K)                  # right where R = 1
    every = 5.0 * torch.nn.functional.one_hot(answer, K).double()[:, None].repeat(1, T + 1, 1)
    with torch.enable_grad():
        mu = mu.clone().requires_grad_(True)
        b = baseline.clone().requires_grad_(True)
        info = {"logits": every, "baseline": b,
                "log_prob": -((l - mu) ** 2).sum(-1) / (2 * sigma**2)}
        loss, parts = reinforce_loss(every[:, -1], y, info)
        grad_mu, grad_b = torch.autograd.grad(loss, (mu, b))
    assert torch.equal(parts["reward"], reward.mean())
    return parts["policy"] + parts["baseline"], grad_mu, grad_b


@checker("ex-hard-reinforce-build", forbid=AUTOGRAD)
def check_reinforce_grads(fn) -> Feedback:
    r"""Exercise :ref:`ex-hard-reinforce-build`: the policy and baseline terms of the hybrid loss
    and their gradients, by hand.

    ``fn(l, mu, sigma, reward, baseline)`` gets the sampled locations ``l`` and the policy's
    means ``mu`` ``(B, T, 2)``, the policy's ``sigma``, the rewards ``(B,)`` (0 or 1) and the
    baseline's predictions ``(B, T)``, and returns ``(loss, grad_mu, grad_baseline)``: the
    policy term plus the baseline term of :func:`attnlab.glimpse.reinforce_loss` (with
    :math:`\log\pi(l) = -\lVert l - \mu\rVert^2 / 2\sigma^2`, the constant dropped) and its
    gradients with respect to ``mu`` and ``baseline``. It is held against autograd on
    ``reinforce_loss`` for random, all-1 and all-0 rewards and a baseline equal to the reward.
    """
    def cases():
        for case, args in _reinforce_cases():
            yield case, args, _library_reference(*args)

    def mistake(**kw):
        return lambda *args: _hybrid(*args, **kw)

    mistakes = [
        (mistake(sign=-1.0), "The policy term has the wrong sign: the loss is -log pi(l) (R - b), "
         "so that gradient *descent* makes the places that earned more than expected more "
         "likely."),
        (mistake(detach=False), "The policy term trains the baseline: in it the advantage R - b is "
         "a constant (b detached), so grad_baseline comes from the squared error alone, "
         "-2 (R - b) / (B T)."),
        (mistake(use_baseline=False), "The advantage is R - b, not R: the baseline is subtracted "
         "from the reward in the policy term."),
        (mistake(per_step_mean=True), "The policy term sums over the T sampled locations of a "
         "canvas and averages over the B canvases (it is not a mean over B T entries)."),
        (mistake(sigma_power=1), "d log pi / d mu = (l - mu) / sigma^2: log pi(l) = "
         "-|l - mu|^2 / (2 sigma^2), with sigma squared."),
        (mistake(constant=True), "Drop the constant -log(2 pi sigma^2) of log pi, as the library "
         "does: it has no gradient, but it changes the loss's value."),
    ]
    return check_build(fn, cases(), what="autograd on attnlab.glimpse.reinforce_loss", atol=1e-8,
                       mistakes=mistakes, names=("loss", "grad_mu", "grad_baseline"),
                       done="Only the policy term reaches mu, only the squared error reaches "
                            "the baseline.")
