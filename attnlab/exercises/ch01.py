"""Checkers for Chapter 1, attention as soft lookup."""
from __future__ import annotations

import math

import torch

from ._core import AUTOGRAD, Feedback, as_tensor, check_build, checker, generator

__all__ = ['check_soft_lookup', 'check_nearest_neighbour', 'check_lookup_gradient',
           'check_nadaraya_watson']


@checker("ex-soft-lookup-by-hand")
def check_soft_lookup(weights) -> Feedback:
    r"""Exercise :ref:`ex-soft-lookup-by-hand`: weights of q = (1, 0) against keys (1,0), (0,1),
    (-1,0), d = 2."""
    w = as_tensor(weights, "weights")
    if isinstance(w, Feedback):
        return w
    scores = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64) / math.sqrt(2)
    expected = torch.softmax(scores, 0)
    if w.shape != (3,):
        return Feedback(False, "expected three weights (one per key), got shape "
                               f"{tuple(w.shape)}.")
    if abs(w.sum().item() - 1) > 1e-3:
        return Feedback(False, f"your weights sum to {w.sum().item():.4f}; a softmax's weights "
                               "sum to 1.")
    unscaled = torch.softmax(scores * math.sqrt(2), 0)
    if torch.allclose(w, unscaled, atol=1e-3):
        return Feedback(False, "these are the weights without the 1/sqrt(d) scale; divide the "
                               "scores by sqrt(2).")
    if torch.allclose(w, expected, atol=1e-3):
        answer = expected @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        return Feedback(True, f"weights {[round(v, 4) for v in expected.tolist()]}, answer "
                              f"{answer.item():.4f}.")
    return Feedback(False, f"expected {[round(v, 4) for v in expected.tolist()]}, got "
                           f"{[round(v, 4) for v in w.tolist()]}. Scores are q.k_i / sqrt(2) = "
                           "(0.707, 0, -0.707).")


@checker("ex-soft-lookup-nearest", answers=("pred",))
def check_nearest_neighbour(pred, x_query=None, x_keys=None, y_values=None,
                            atol: float = 1e-3) -> Feedback:
    r"""Exercise :ref:`ex-soft-lookup-nearest`: predictions equal the value of the nearest key.

    ``x_query``, ``x_keys`` and ``y_values`` default to the exercise's data: the chapter's 100
    test inputs ``x_test`` and the 60 training samples of ``kernel_regression_data(seed=0)``.
    When grading only ``pred`` is read, and it is held against that data.
    """
    p = as_tensor(pred, "pred")
    if isinstance(p, Feedback):
        return p
    if x_query is None or x_keys is None or y_values is None:
        from attnlab import data
        x_keys, y_values, x_query, _ = data.kernel_regression_data(n_train=60, noise=0.3, seed=0)
    xq, xk, yv = (torch.as_tensor(t, dtype=torch.float64) for t in (x_query, x_keys, y_values))
    if p.shape != xq.shape:
        return Feedback(False, f"expected one prediction per query, shape {tuple(xq.shape)}, "
                               f"got {tuple(p.shape)}.")
    nearest = yv[(xq[:, None] - xk[None, :]).abs().argmin(1)]
    close = (p - nearest).abs() <= atol
    if close.all():
        return Feedback(True, f"all {len(p)} predictions equal the nearest training value: "
                              "a very narrow kernel is hard attention.")
    return Feedback(False, f"{int((~close).sum())} of {len(p)} predictions differ from the "
                           f"nearest training value by more than {atol} (largest gap "
                           f"{(p - nearest).abs().max().item():.3g}). "
                           "Is the width small enough (try 0.001)?")


# --- Derive: the gradient of a soft lookup -----------------------------------------------------

def _gradient_cases():
    """The chapter's four keys, random keys, one key, a saturated softmax, equal values."""
    g = generator(1)

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    yield "the chapter's query (0.8, 0.6), four keys, values 10 to 40", \
        (torch.tensor([0.8, 0.6], dtype=torch.float64), keys,
         torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64))
    yield "d = 3, six keys", (rand(3), rand(6, 3), rand(6))
    yield "d = 5, a single key", (rand(5), rand(1, 5), rand(1))
    yield "d = 4, eight keys, large scores (a nearly one-hot softmax)", \
        (rand(4, scale=2.0), rand(8, 4, scale=2.0), rand(8))
    yield "d = 2, five keys that all hold the same value", (rand(2), rand(5, 2),
                                                            torch.full((5,), 3.0,
                                                                       dtype=torch.float64))


def _lookup_gradient(q, keys, values):
    """d answer / d q with torch.autograd, answer = softmax(keys q) . values (attnlab's SDPA)."""
    from attnlab.functional import scaled_dot_product_attention
    q = q.detach().clone().requires_grad_(True)
    answer = scaled_dot_product_attention(q[None], keys, values[:, None], scale=1.0)  # (1, 1)
    (grad,) = torch.autograd.grad(answer.sum(), q)
    return grad


def _weights(q, keys):
    return torch.softmax(keys @ q, 0)                                           # (S,)


@checker("ex-soft-lookup-gradient", forbid=AUTOGRAD)
def check_lookup_gradient(fn) -> Feedback:
    r"""Exercise :ref:`ex-soft-lookup-gradient`: the gradient of a soft lookup, by formula.

    ``fn(q, keys, values)`` gets a query ``(d,)``, keys ``(S, d)`` and scalar values ``(S,)`` and
    returns :math:`\partial y / \partial \mathbf q` ``(d,)`` for
    :math:`y = \sum_j \alpha_j v_j`, :math:`\alpha = \operatorname{softmax}(K\mathbf q)`
    (unscaled scores, as in the chapter). It is held against ``torch.autograd`` on the chapter's
    example, random keys, one key, a saturated softmax and equal values.
    """
    def cases():
        for case, args in _gradient_cases():
            yield case, args, _lookup_gradient(*args)

    def no_centre(q, k, v):
        return (_weights(q, k) * v) @ k

    def diagonal(q, k, v):
        a = _weights(q, k)
        return (a * (1 - a) * v) @ k

    def flipped(q, k, v):
        a = _weights(q, k)
        return -(a * (v - a @ v)) @ k

    mistakes = [
        (no_centre, "This is sum_j alpha_j v_j k_j: the softmax's normaliser is missing. Every "
                    "weight depends on every score, d alpha_i / d s_j = alpha_i (delta_ij - "
                    "alpha_j), so each value enters as v_j minus the answer."),
        (diagonal, "You kept only the diagonal of the softmax Jacobian, alpha_j (1 - alpha_j); "
                   "the off-diagonal entries -alpha_i alpha_j count too."),
        (flipped, "The sign is flipped: raising the score of a key whose value is above the "
                  "answer raises the answer."),
        (lambda q, k, v: torch.zeros_like(q),
         "Zero is the gradient of the hard (argmax) lookup; the soft lookup's is not zero."),
    ]
    return check_build(fn, cases(), what="torch.autograd's gradient", atol=1e-8,
                       mistakes=mistakes, names=("gradient",),
                       done="The gradient is sum_j alpha_j (v_j - y) k_j; when one weight is "
                            "nearly 1, every alpha_j (v_j - y) is nearly 0, so a saturated "
                            "softmax passes almost no gradient.")


# --- Build: Nadaraya-Watson attention ----------------------------------------------------------

def _nw_cases():
    """Several sizes, vector values, one key, one query, tiny and huge widths, far queries."""
    from attnlab import data
    g = generator(0)

    def uniform(*shape, low=0.0, high=5.0):
        return low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.float64)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x_train, y_train, x_test, _ = (t.double() for t in data.kernel_regression_data(seed=0))
    yield "the chapter's 100 test queries and 60 training points, width 0.3", \
        (x_test, x_train, y_train, 0.3)
    yield "7 queries, 12 keys, width 0.5", (uniform(7), uniform(12), randn(12), 0.5)
    yield "one query, 5 keys, width 1.0", (uniform(1), uniform(5), randn(5), 1.0)
    yield "6 queries, a single key, width 0.2", (uniform(6), uniform(1), randn(1), 0.2)
    yield "5 queries, 9 keys, values of shape (9, 3), width 0.4", \
        (uniform(5), uniform(9), randn(9, 3), 0.4)
    yield "width 0.001 (scores near -1e7: a plain exp gives 0/0)", \
        (uniform(8), uniform(20), randn(20), 1e-3)
    yield "width 10000 (every weight is nearly 1/S)", (uniform(6), uniform(10), randn(10), 1e4)
    yield "queries far outside the keys, width 0.3", \
        (uniform(4, low=40.0, high=60.0), uniform(10), randn(10), 0.3)


def _nw_reference(q, k, v, width, score=None, dim=-1):
    """attnlab's masked_softmax on the Gaussian scores -(q - k)^2 / (2 width^2)."""
    from attnlab.functional import masked_softmax
    diff = q[:, None] - k[None, :]                                              # (T, S)
    s = -diff**2 / (2 * width**2) if score is None else score(diff, width)
    w = masked_softmax(s, dim=dim)
    return w @ v, w


@checker("ex-soft-lookup-build")
def check_nadaraya_watson(fn) -> Feedback:
    r"""Exercise :ref:`ex-soft-lookup-build`: Nadaraya-Watson attention with a Gaussian kernel.

    ``fn(queries, keys, values, width)`` gets queries ``(T,)``, keys ``(S,)``, values ``(S,)`` or
    ``(S, d_v)`` and a width, and returns ``(predictions, weights)``: ``(T,)`` or ``(T, d_v)``,
    and ``(T, S)``. The weights are the softmax over the keys of
    :math:`-(x - x_i)^2 / (2\sigma^2)`; the reference uses
    :func:`attnlab.functional.masked_softmax`. Cases: the chapter's data, random sizes, one key,
    one query, vector values, widths 0.001 and 10000, and queries far from every key.
    """
    def cases():
        for case, args in _nw_cases():
            yield case, args, _nw_reference(*args)

    def variant(score=None, dim=-1):
        return lambda q, k, v, w: _nw_reference(q, k, v, w, score, dim)

    mistakes = [
        (variant(dim=0), "The softmax runs over the queries (dim 0); each query's weights over "
                         "the keys (dim -1) must sum to 1."),
        (variant(lambda d, w: -d**2 / w**2), "The factor 1/2 is missing: the Gaussian score is "
                                             "-(x - x_i)^2 / (2 width^2)."),
        (variant(lambda d, w: -d**2 / (2 * w)), "The width is not squared: the score is "
                                                "-(x - x_i)^2 / (2 width^2)."),
        (variant(lambda d, w: d**2 / (2 * w**2)), "The sign is flipped: with +(x - x_i)^2 the "
                                                  "farthest key wins. Closer keys need higher "
                                                  "scores."),
        (variant(lambda d, w: -d.abs() / w), "That is the Laplace kernel -|x - x_i| / width; "
                                             "the Gaussian kernel squares the distance."),
    ]
    return check_build(fn, cases(), what="attention pooling with attnlab's masked_softmax",
                       atol=1e-8, mistakes=mistakes, names=("predictions", "weights"),
                       done="A tiny width gives the nearest neighbour, a huge one the mean, and "
                            "far-away queries stay finite.")
