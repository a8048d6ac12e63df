"""Chapter 14's checkers: the receptive field, the crop and zoom, and the square in a square."""
import torch
import torch.nn.functional as F

from attnlab.exercises import check_crop_and_zoom, check_nested_square, check_scale_receptive
from attnlab.practice import crop_and_zoom
from _feedback import wrong


def not_done(feedback):
    assert not feedback.ok and not feedback.done and feedback.startswith("Not done yet.")
    return True


def test_receptive_field():
    assert check_scale_receptive(9, 18).ok
    assert check_scale_receptive(9.0, torch.tensor(18)).ok
    assert wrong(check_scale_receptive(7, 18), "stride 2")
    assert wrong(check_scale_receptive(11, 18), "not itself")
    assert wrong(check_scale_receptive(10, 18), "kernel sizes")
    assert wrong(check_scale_receptive(9, 9), "shrunk image")
    assert wrong(check_scale_receptive(9, 4.5), "multiply by 2")
    assert wrong(check_scale_receptive(9, 17), "disjoint pairs")
    assert wrong(check_scale_receptive(9), "give coarse")
    assert wrong(check_scale_receptive(9, 30), "two original pixels")
    assert not_done(check_scale_receptive(..., ...))
    assert not_done(check_scale_receptive(9, ...))
    assert wrong(check_scale_receptive("9", 18), "should be a number")


def crop(x, centre, side, size, *, scale=1.0, flip=False, align_corners=False,
         mode="bilinear", padding_mode="zeros"):
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = scale * side
    theta[:, :, 2] = centre.flip(-1) if flip else centre
    grid = F.affine_grid(theta, [len(x), x.shape[1], size, size], align_corners=align_corners)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


def test_crop_and_zoom_reference_passes():
    assert check_crop_and_zoom(crop_and_zoom).ok
    feedback = check_crop_and_zoom(crop)
    assert feedback.ok and feedback.startswith("Correct!") and "6 cases" in feedback


def test_crop_and_zoom_mistakes_are_named():
    assert wrong(check_crop_and_zoom(lambda *a: crop(*a, flip=True)), "swapped", "(x, y)")
    assert wrong(check_crop_and_zoom(lambda *a: crop(*a, align_corners=True)),
                 "align_corners=False")
    assert wrong(check_crop_and_zoom(lambda *a: crop(*a, scale=0.5)), "half as wide")
    assert wrong(check_crop_and_zoom(lambda *a: crop(*a, scale=2.0)), "twice as wide")
    assert wrong(check_crop_and_zoom(lambda *a: crop(*a, mode="nearest")), "bilinearly")
    assert wrong(check_crop_and_zoom(lambda *a: crop(*a, padding_mode="border")),
                 "read zeros")


def test_crop_and_zoom_shapes_and_stubs():
    assert wrong(check_crop_and_zoom(lambda x, c, s, n: crop(x, c, s, n)[:, 0]),
                 "expected shape (2, 1, 12, 12), got (2, 12, 12)")
    assert wrong(check_crop_and_zoom("crop"), "pass your function")

    def stub(x, centre, side, size):
        raise NotImplementedError
    assert not_done(check_crop_and_zoom(stub))
    assert not_done(check_crop_and_zoom(lambda *a: None))
    assert wrong(check_crop_and_zoom(lambda *a: 1 / 0), "ZeroDivisionError")


def square(t1, l1, t2, l2):
    return t1 + l1[:, None] * t2, l1 * l2


def test_nested_square():
    feedback = check_nested_square(square)
    assert feedback.ok and "3 cases" in feedback
    assert wrong(check_nested_square(lambda t1, l1, t2, l2: (t1 + t2, l1 * l2)), "unscaled")
    assert wrong(check_nested_square(lambda t1, l1, t2, l2: (l1[:, None] * t2, l1 * l2)),
                 "add t1")
    assert wrong(check_nested_square(lambda t1, l1, t2, l2: (square(t1, l1, t2, l2)[0], l2)),
                 "side", "multiply by l1")
    assert wrong(check_nested_square(lambda t1, l1, t2, l2: (t1 + l1[:, None] * t2 / 2,
                                                             l1 * l2)), "not half")
    assert wrong(check_nested_square(lambda t1, l1, t2, l2: (square(t1, l1, t2, l2)[0],
                                                             (l1 * l2)[:, None])),
                 "side: expected shape (3,), got (3, 1)")
    assert wrong(check_nested_square(lambda *a: square(*a)[0]), "expected 2 result(s)")

    def stub(t1, l1, t2, l2):
        raise NotImplementedError
    assert not_done(check_nested_square(stub))
    assert wrong(check_nested_square(None), "pass your function")
