"""Chapter 12's checkers: the reference passes; each typical mistake gets its own hint."""
import torch
import torch.nn.functional as F

from attnlab.exercises import check_c2f, check_c2f_params, check_resatt_gradient
from _feedback import not_done, wrong


def test_resatt_gradient():
    for answer in (81, 81.0, torch.tensor(81.0), lambda m, k: ((1 + m) / m) ** k):
        feedback = check_resatt_gradient(answer)
        assert feedback.ok and feedback.startswith("Correct!") and "81" in feedback
    assert wrong(check_resatt_gradient(1 / 81), "the one with the 1 is the larger")
    assert wrong(check_resatt_gradient(1.5**4), "(1 + m)^k; divide")
    assert wrong(check_resatt_gradient(0.0625), "M stack's gradient alone")
    assert wrong(check_resatt_gradient(16), "no gate at all")
    assert wrong(check_resatt_gradient(3), "one module")
    assert wrong(check_resatt_gradient(12), "multiply, they do not add")
    assert wrong(check_resatt_gradient(lambda m, k: 3**k), "m = 0.25", "expected a factor of 5")
    assert wrong(check_resatt_gradient(50), "Each module multiplies")
    assert wrong(check_resatt_gradient(lambda m: m), "TypeError")
    assert wrong(check_resatt_gradient("81"), "should be a number")
    assert not_done(check_resatt_gradient(...))


def c2f_params(c, n):
    return c**2 * (1 + 4.5 * n + (2 + n) / 2) + 2 * c * (2 + n)


def test_c2f_params():
    feedback = check_c2f_params(c2f_params)
    assert feedback.ok and feedback.startswith("Correct!") and "1,888" in feedback
    assert check_c2f_params({n: int(c2f_params(16, n)) for n in (1, 2, 3)}).ok
    assert wrong(check_c2f_params(lambda c, n: c2f_params(c, n) - 2 * c * (2 + n)),
                 "batch norms are missing")
    assert wrong(check_c2f_params(lambda c, n: c2f_params(c, n) + 2 * c * (2 + n)),
                 "running mean and variance are buffers")
    assert wrong(check_c2f_params(lambda c, n: c2f_params(c, n) - c * c / 2),
                 "all (2 + n) pieces")
    assert wrong(check_c2f_params(lambda c, n: c2f_params(c, n) - 4 * n * c * c), "3x3")
    assert wrong(check_c2f_params(lambda c, n: c2f_params(c, n) - n * (2.25 * c * c + c)),
                 "two 3x3 convolutions")
    assert wrong(check_c2f_params(lambda c, n: c2f_params(c, n) + n * (13.5 * c * c + 2 * c)),
                 "one half, c/2 channels")
    assert wrong(check_c2f_params({1: 1888, 2: 3200, 3: 4500}), "n = 3", "expected 4,512",
                 "Count cv1")
    assert wrong(check_c2f_params({1: 1888}), "n = 2, 3")
    assert wrong(check_c2f_params(1888), "formula f(c, n)")
    assert wrong(check_c2f_params({1: "1888", 2: 3200, 3: 4512}), "should be a number")
    assert wrong(check_c2f_params(lambda c, n: 1 / 0), "ZeroDivisionError")
    assert not_done(check_c2f_params(...))
    assert not_done(check_c2f_params(lambda c, n: ...))


def c2f(x, cv1, bottlenecks, cv2, *, first_half=False, chain=True, shortcut=True, act=F.silu,
        swap=False):
    def conv(z, wb):
        return act(F.conv2d(z, wb[0], wb[1], padding=wb[0].shape[-1] // 2))
    y0, y1 = conv(x, cv1).chunk(2, dim=1)
    pieces, z = [y0, y1], (y0 if first_half else y1)
    for a, b in bottlenecks:
        out = (z if shortcut else 0) + conv(conv(z, a), b)
        pieces.append(out)
        z = out if chain else z
    if swap:
        pieces[:2] = pieces[1::-1]
    return conv(torch.cat(pieces, dim=1), cv2)


def test_c2f_reference_passes():
    feedback = check_c2f(c2f)
    assert feedback.ok and feedback.startswith("Correct!") and "5 cases" in feedback


def test_c2f_mistakes_are_named():
    assert wrong(check_c2f(lambda *a: c2f(*a, first_half=True)), "*second* half")
    assert wrong(check_c2f(lambda *a: c2f(*a, chain=False)), "form a chain", "n=2")
    assert wrong(check_c2f(lambda *a: c2f(*a, shortcut=False)), "adds its input back")
    assert wrong(check_c2f(lambda *a: c2f(*a, act=F.relu)), "SiLU")
    assert wrong(check_c2f(lambda *a: c2f(*a, swap=True)), "order of the pieces")


def test_c2f_shapes_and_stubs():
    assert wrong(check_c2f(lambda *a: c2f(*a)[:, :2]),
                 "expected shape (1, 4, 5, 7), got (1, 2, 5, 7)")
    assert wrong(check_c2f(lambda x, cv1, bottlenecks, cv2: F.conv2d(x, *cv2)),
                 "raised RuntimeError")
    assert wrong(check_c2f(3), "pass your function")

    def stub(x, cv1, bottlenecks, cv2):
        raise NotImplementedError
    assert not_done(check_c2f(stub))
    assert not_done(check_c2f(lambda *a: None))
