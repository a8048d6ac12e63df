"""Chapter 16's checkers: the reference passes; each typical mistake gets its own hint."""
import torch

from attnlab.exercises import check_alibi_slopes, check_ntk_base, check_rope
from attnlab.exercises.ch16 import _rope_ref, _slopes_naive
from attnlab.positions import alibi_slopes, apply_rope
from _feedback import not_done, wrong


def test_ntk_base():
    for answer in (lambda b, f, d: b * f ** (d / (d - 2)), 10000 * 4 ** (64 / 62)):
        feedback = check_ntk_base(answer)
        assert feedback.ok and "41,829" in feedback
    assert wrong(check_ntk_base(lambda b, f, d: b * f), "a little less than f")
    assert wrong(check_ntk_base(lambda b, f, d: b * f ** ((d - 2) / d)), "upside down")
    assert wrong(check_ntk_base(lambda b, f, d: b / f), "slower")
    assert wrong(check_ntk_base(lambda b, f, d: b * f * f), "not 2")
    assert wrong(check_ntk_base(123.0), "expected")
    assert check_ntk_base(41829).ok                       # rounded to an integer
    assert wrong(check_ntk_base(lambda b: b), "TypeError")
    assert not_done(check_ntk_base(...))


def test_rope():
    assert check_rope(lambda x, p, b: apply_rope(x, p, base=b, interleaved=False)).ok
    assert check_rope(lambda x, p, b: apply_rope(x.float(), p, base=b,
                                                 interleaved=False).double()).ok  # float32
    assert wrong(check_rope(lambda x, p, b: apply_rope(x, p, base=b)), "neighbours")
    assert wrong(check_rope(lambda x, p, b: _rope_ref(x, p, b, sign=-1.0)), "wrong way")
    assert wrong(check_rope(lambda x, p, b: _rope_ref(x, p, b, exponent=1.0)), "b^(-2i/d)")
    assert wrong(check_rope(lambda x, p, b: _rope_ref(x, p, b, pos=False)), "its own position")
    assert wrong(check_rope(lambda x, p, b: x), "nothing was rotated")
    assert wrong(check_rope(lambda x, p, b: x[..., :-1]), "shape")

    def stub(x, positions, base):
        raise NotImplementedError
    assert not_done(check_rope(stub))


def test_alibi_slopes():
    assert check_alibi_slopes(alibi_slopes).ok
    assert check_alibi_slopes(lambda h: alibi_slopes(h).float()).ok      # float32 is fine
    assert check_alibi_slopes(lambda h: alibi_slopes(h).tolist()).ok
    assert wrong(check_alibi_slopes(_slopes_naive), "power of two only", "h = 6")
    assert wrong(check_alibi_slopes(lambda h: torch.tensor(
        [2.0 ** (-8.0 * i / h) for i in range(h)], dtype=torch.float64)), "start at i = 1")
    assert wrong(check_alibi_slopes(lambda h: torch.ones(h)), "h = 1")

    def stub(h):
        raise NotImplementedError
    assert not_done(check_alibi_slopes(stub))
