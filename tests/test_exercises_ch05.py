"""Chapter 5's checkers: the reference passes; each typical mistake gets its own hint."""
import torch
import torch.nn.functional as F

from attnlab.exercises import check_rotation_theta, check_spatial_cost, check_spatial_gate
from _feedback import not_done, wrong


def gate(x, weight, bias, *, order=("mean", "max"), act=torch.sigmoid, padding=None,
         apply=True, use_bias=True):
    maps = {"mean": x.mean(1, keepdim=True), "max": x.amax(1, keepdim=True),
            "sum": x.sum(1, keepdim=True)}
    s = torch.cat([maps[o] for o in order], dim=1)
    k = weight.shape[-1]
    a = act(F.conv2d(s, weight, bias if use_bias else None,
                     padding=k // 2 if padding is None else padding))
    return x * a if apply else a


def softmax_positions(t):
    return torch.softmax(t.flatten(2), -1).view_as(t)


def test_spatial_gate_reference_passes():
    feedback = check_spatial_gate(gate)
    assert feedback.ok and feedback.startswith("Correct!") and "6 cases" in feedback


def test_spatial_gate_mistakes_are_named():
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, order=("max", "mean"))),
                 "wrong order", "channel average")
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, act=softmax_positions)),
                 "softmax over the positions", "sigmoid")
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, act=lambda t: t)),
                 "sigmoid is missing")
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, use_bias=False)),
                 "bias is missing")
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, order=("sum", "max"))),
                 "channel sum")


def test_spatial_gate_shapes_name_padding_and_the_gate():
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, padding=0)),
                 "RuntimeError", "padding=k // 2")

    def cropped(x, w, b):                     # no padding, and the input cropped to match
        k = w.shape[-1]
        a = gate(x, w, b, padding=0, apply=False)
        return x[..., k // 2:x.shape[-2] - k // 2, k // 2:x.shape[-1] - k // 2] * a
    assert wrong(check_spatial_gate(cropped),
                 "expected shape (2, 8, 9, 11), got (2, 8, 3, 5)", "no padding")

    def padded_wrong(x, w, b):                # padding 1 for every k: a map of another size
        a = gate(x, w, b, padding=1, apply=False)
        return x[..., :a.shape[-2], :a.shape[-1]] * a
    assert wrong(check_spatial_gate(padded_wrong),
                 "expected shape (2, 8, 9, 11), got (2, 8, 5, 7)", "k // 2")
    assert wrong(check_spatial_gate(lambda x, w, b: gate(x, w, b, apply=False)),
                 "expected shape (2, 8, 9, 11), got (2, 1, 9, 11)", "gated map")


def test_spatial_gate_stubs_and_bad_answers():
    def stub(x, weight, bias):
        raise NotImplementedError
    assert not_done(check_spatial_gate(stub))
    assert not_done(check_spatial_gate(lambda *a: None))
    assert not_done(check_spatial_gate(...))
    assert wrong(check_spatial_gate(3), "pass your function")
    assert wrong(check_spatial_gate(lambda *a: 1 / 0), "ZeroDivisionError")


def test_rotation_theta():
    assert check_rotation_theta([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).ok
    assert check_rotation_theta(torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])).ok
    assert wrong(check_rotation_theta([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]), "other way",
                 "inverse")
    assert wrong(check_rotation_theta([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), "half a turn")
    assert wrong(check_rotation_theta([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "identity")
    assert wrong(check_rotation_theta([[0.0, -1.0, 0.5], [1.0, 0.0, 0.0]]), "no shift")
    assert wrong(check_rotation_theta([1.0, 0.0]), "2 x 3", "(2,)")
    assert wrong(check_rotation_theta("rot90"), "should be a tensor")
    assert not_done(check_rotation_theta(...))


def test_spatial_cost_stub_is_not_done():
    assert not_done(check_spatial_cost(..., ..., ...))
