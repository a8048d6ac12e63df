"""Chapter 1's checkers: the reference passes; each typical mistake gets its own hint."""
import torch

from attnlab.exercises import check_lookup_gradient, check_nadaraya_watson
from _feedback import not_done, wrong


# --- Derive: the gradient of a soft lookup -----------------------------------------------------

def gradient(q, keys, values, *, centre=True, diagonal=False, sign=1.0):
    alpha = torch.softmax(keys @ q, 0)
    if diagonal:
        return (alpha * (1 - alpha) * values) @ keys
    return sign * (alpha * (values - (alpha @ values if centre else 0.0))) @ keys


def test_gradient_reference_passes():
    feedback = check_lookup_gradient(gradient)
    assert feedback.ok and feedback.startswith("Correct!") and "5 cases" in feedback
    assert "saturated" in feedback


def test_gradient_mistakes_are_named():
    assert wrong(check_lookup_gradient(lambda q, k, v: gradient(q, k, v, centre=False)),
                 "normaliser is missing", "chapter's query")
    assert wrong(check_lookup_gradient(lambda q, k, v: gradient(q, k, v, diagonal=True)),
                 "only the diagonal")
    assert wrong(check_lookup_gradient(lambda q, k, v: gradient(q, k, v, sign=-1.0)),
                 "sign is flipped")
    assert wrong(check_lookup_gradient(lambda q, k, v: torch.zeros_like(q)), "hard (argmax)")


def test_gradient_shapes_and_stubs():
    assert wrong(check_lookup_gradient(lambda q, k, v: gradient(q, k, v)[None]),
                 "expected shape (2,), got (1, 2)")
    assert wrong(check_lookup_gradient("alpha (v - y) k"), "pass your function")

    def stub(q, keys, values):
        raise NotImplementedError
    assert not_done(check_lookup_gradient(stub))
    assert not_done(check_lookup_gradient(...))
    assert not_done(check_lookup_gradient(lambda q, k, v: None))
    assert wrong(check_lookup_gradient(lambda q, k, v: 1 / 0), "ZeroDivisionError")


# --- Build: Nadaraya-Watson attention ----------------------------------------------------------

def nw(q, k, v, width, *, score=None, dim=-1, stable=True):
    d = q[:, None] - k[None, :]
    s = -d**2 / (2 * width**2) if score is None else score(d, width)
    if stable:
        w = torch.softmax(s, dim)
    else:
        e = s.exp()
        w = e / e.sum(dim, keepdim=True)
    return w @ v, w


def test_nadaraya_watson_reference_passes():
    feedback = check_nadaraya_watson(nw)
    assert feedback.ok and feedback.startswith("Correct!") and "8 cases" in feedback


def test_nadaraya_watson_mistakes_are_named():
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w, dim=0)),
                 "over the queries")
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w,
                                                             score=lambda d, s: -d**2 / s**2)),
                 "factor 1/2")
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w,
                                                             score=lambda d, s: -d**2 / (2 * s))),
                 "not squared")
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w,
                                                             score=lambda d, s: d**2 / (2 * s**2))),
                 "sign is flipped", "farthest")
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w,
                                                             score=lambda d, s: -d.abs() / s)),
                 "Laplace")
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w, stable=False)),
                 "NaN or inf", "width 0.001")


def test_nadaraya_watson_shapes_and_stubs():
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: nw(q, k, v, w)[0]),
                 "expected 2 result(s)")
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: (nw(q, k, v, w)[0], nw(q, k, v, w)[1].T)),
                 "weights: expected shape (100, 60), got (60, 100)")
    assert wrong(check_nadaraya_watson(None), "pass your function")

    def stub(queries, keys, values, width):
        raise NotImplementedError
    assert not_done(check_nadaraya_watson(stub))
    assert not_done(check_nadaraya_watson(...))
    assert wrong(check_nadaraya_watson(lambda q, k, v, w: 1 / 0), "ZeroDivisionError")
