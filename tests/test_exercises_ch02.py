"""Chapter 2's build checker: the reference passes; each typical mistake gets its own hint."""
import math

import torch

from attnlab.exercises import check_sdpa
from _feedback import wrong


def attention(q, k, v, mask=None, is_causal=False, *, scale=True, axis=-1, stable=True):
    s = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    if is_causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    if not stable:
        e = s.exp()
        return e / e.sum(axis, keepdim=True) @ v
    return torch.softmax(s, axis) @ v


def test_reference_passes():
    feedback = check_sdpa(attention)
    assert feedback.ok and feedback.startswith("Correct!") and "10 cases" in feedback


def test_typical_mistakes_are_named():
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False: attention(q, k, v, m, c, scale=False)),
                 "not scaled", "sqrt(d)", "no mask")
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False: attention(q, k, v, None, c)),
                 "mask is ignored")
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False:
                            attention(q, k, v, None if m is None else ~m, c)), "inverted")
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False: attention(q, k, v, m, False)),
                 "causal mask is missing", "causal")
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False: attention(q, k, v, m, c, axis=-2)),
                 "over the queries")
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False: attention(q, k, v, m, c, stable=False)),
                 "NaN or inf", "thousands")


def test_shapes_and_stubs():
    assert wrong(check_sdpa(lambda q, k, v, m=None, c=False: attention(q, k, v, m, c).mT),
                 "expected shape (2, 3, 6), got (2, 6, 3)")
    assert wrong(check_sdpa(3), "pass your function")

    def stub(q, k, v, mask=None, is_causal=False):
        raise NotImplementedError
    feedback = check_sdpa(stub)
    assert not feedback.ok and not feedback.done and feedback.startswith("Not done yet.")
    assert not check_sdpa(lambda *a: None).done
    raised = check_sdpa(lambda *a: 1 / 0)
    assert wrong(raised, "ZeroDivisionError")


def test_a_lower_precision_answer_is_told_to_keep_the_dtype():
    feedback = check_sdpa(lambda q, k, v, m=None, c=False: attention(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                                                                      m, c))
    assert wrong(feedback, "is bfloat16 but the inputs are float64", "rounding")


def test_an_error_of_the_learners_own_kind_is_named_the_same_when_regraded():
    class ShapeTrouble(Exception):
        pass

    def raises(*args):
        raise ShapeTrouble("heads do not divide the width")
    assert wrong(check_sdpa(raises), "ShapeTrouble: heads do not divide the width")
