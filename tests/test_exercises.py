"""attnlab.exercises: every checker accepts the reference solution and explains a wrong answer."""
import math

import torch

from attnlab import exercises
from attnlab.data import kernel_regression_data


def test_check_soft_lookup():
    right = torch.softmax(torch.tensor([1.0, 0.0, -1.0]) / math.sqrt(2), 0)
    ok = exercises.check_soft_lookup(right)
    assert ok.ok and ok.startswith("Correct") and bool(ok)
    unscaled = exercises.check_soft_lookup(torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0))
    assert not unscaled.ok and "sqrt" in unscaled
    assert "sum to" in exercises.check_soft_lookup([0.5, 0.5, 0.5])
    assert "three weights" in exercises.check_soft_lookup([0.5, 0.5])
    assert not exercises.check_soft_lookup([0.2, 0.3, 0.5]).ok
    assert "tensor or a list" in exercises.check_soft_lookup("abc")


def test_check_nearest_neighbour():
    x_train, y_train, x_test, _ = kernel_regression_data(n_train=20, n_test=30, seed=1)
    nearest = y_train[(x_test[:, None] - x_train[None]).abs().argmin(1)]
    assert exercises.check_nearest_neighbour(nearest, x_test, x_train, y_train).ok
    wrong = exercises.check_nearest_neighbour(nearest + 0.1, x_test, x_train, y_train)
    assert not wrong.ok and "30 of 30" in wrong and "width" in wrong
    assert "one prediction per query" in exercises.check_nearest_neighbour(nearest[:3], x_test, x_train, y_train)


def _correct(feedback):
    return feedback.ok and feedback.startswith("Correct") and bool(feedback)


def _wrong(feedback, *words):
    assert not feedback.ok and feedback.startswith("Not yet"), feedback
    for word in words:
        assert word in feedback, (word, str(feedback))
    return True


def test_check_attention_scale():
    assert _correct(exercises.check_attention_scale(1 / (4 * math.sqrt(256))))
    # the measured factor of the solution passes too
    g = torch.Generator().manual_seed(0)
    q, k = 2 * torch.randn(1000, 256, generator=g), 2 * torch.randn(1000, 256, generator=g)
    assert _correct(exercises.check_attention_scale(1 / (q * k).sum(-1).std()))
    assert _wrong(exercises.check_attention_scale(1 / 16), "0.015625", "variance", "16")
    assert _wrong(exercises.check_attention_scale(1 / 32), "both have std 2")
    assert _wrong(exercises.check_attention_scale(64), "divisor", "1/64")
    assert _wrong(exercises.check_attention_scale(1 / 256), "sqrt(d_k)")
    assert _wrong(exercises.check_attention_scale(0.5), "Measure")
    assert _wrong(exercises.check_attention_scale("1/64"), "should be a number")
    assert _wrong(exercises.check_attention_scale(True), "should be a number")
    assert _wrong(exercises.check_attention_scale(torch.ones(3)), "single number")


def test_check_se_count():
    def formula(c, r):
        return 2 * c * (c // r) + c // r + c

    ok = exercises.check_se_count(formula)
    assert _correct(ok) and "2,530,992" in ok
    assert _correct(exercises.check_se_count({r: formula(256, r) for r in (4, 8, 16, 32)}))
    assert _wrong(exercises.check_se_count(lambda c, r: 2 * c * c // r), "weights only", "bias")
    assert _wrong(exercises.check_se_count(lambda c, r: 2 * c * c // r + c), "first layer")
    assert _wrong(exercises.check_se_count({4: 1, 8: 2, 16: 3, 32: 4}), "expected 33,088", "Count W1")
    assert _wrong(exercises.check_se_count({4: 1, 8: 2}), "r = 16, 32")
    assert _wrong(exercises.check_se_count(lambda c, r: 1 / 0), "ZeroDivisionError")
    assert _wrong(exercises.check_se_count(lambda c, r: "many"), "should be a number")
    assert _wrong(exercises.check_se_count(8464), "formula f(C, r)")


def test_check_spatial_cost():
    from attnlab.channel import SqueezeExcite
    from attnlab.spatial import CoordinateAttention, SpatialGate
    from attnlab.utils import count_parameters

    spatial = {k: count_parameters(SpatialGate(k)) for k in (3, 5, 7)}
    coord = {c: count_parameters(CoordinateAttention(c)) for c in (64, 512)}
    se = {c: count_parameters(SqueezeExcite(c)) for c in (64, 512)}
    assert spatial == {k: 2 * k * k + 1 for k in (3, 5, 7)}        # the formula the hint teaches
    ok = exercises.check_spatial_cost(spatial, coord, se)
    assert _correct(ok) and "does not depend on C" in ok
    assert _wrong(exercises.check_spatial_cost({k: 2 * k * k for k in (3, 5, 7)}, coord, se), "bias")
    assert _wrong(exercises.check_spatial_cost({k: k * k + 1 for k in (3, 5, 7)}, coord, se), "two maps")
    no_bn = {c: v - 2 * max(8, c // 32) for c, v in coord.items()}
    assert _wrong(exercises.check_spatial_cost(spatial, no_bn, se), "batch norm")
    assert _wrong(exercises.check_spatial_cost(spatial, coord, {c: 2 * c * c // 16 for c in (64, 512)}),
                  "weights only")
    assert _wrong(exercises.check_spatial_cost(spatial), "coordinate: not given")
    assert _wrong(exercises.check_spatial_cost(), "at least one")
    assert _wrong(exercises.check_spatial_cost([19, 51, 99], coord, se), "should be a dict")
    assert _wrong(exercises.check_spatial_cost({3: "19", 5: 51, 7: 99}, coord, se), "should be a number")


def test_check_non_local_cost():
    n = 8 * 28 * 28
    ok = exercises.check_non_local_cost(n * n, n * (8 * 14 * 14))
    assert _correct(ok) and "1,568" in ok and "four times fewer" in ok
    assert _wrong(exercises.check_non_local_cost(n, n * n // 4), "number of positions", "N * N")
    assert _wrong(exercises.check_non_local_cost(n * n, n * n // 8), "keeps all frames")
    assert _wrong(exercises.check_non_local_cost(n * n, (n // 4) ** 2), "N x M, not M x M")
    assert _wrong(exercises.check_non_local_cost(4 * n * n, n * n // 4), "bytes")
    assert _wrong(exercises.check_non_local_cost("39M", 1), "should be a number")
    # other sizes follow the block's own pooling (ceil_mode rounds odd sides up)
    assert _correct(exercises.check_non_local_cost(2 * 5 * 5 * 50, 50 * 2 * 3 * 3, frames=2, height=5, width=5))


def test_check_video_axial_cost():
    ok = exercises.check_video_axial_cost(lambda F, H, W: F * H * W * (F + H + W), 4 / 3)
    assert _correct(ok) and "scores" in ok and "exponent" in ok
    assert _correct(exercises.check_video_axial_cost(exponent=1.333))
    assert _wrong(exercises.check_video_axial_cost(lambda F, H, W: F * H * W * (H + W)), "time step")
    assert _wrong(exercises.check_video_axial_cost(lambda F, H, W: (F * H * W) ** 2), "full attention")
    assert _wrong(exercises.check_video_axial_cost(exponent=1.5), "image case")
    assert _wrong(exercises.check_video_axial_cost(exponent=2), "full attention")
    assert _wrong(exercises.check_video_axial_cost(exponent=1.2), "power of n")
    assert _wrong(exercises.check_video_axial_cost(), "give scores")
    assert _wrong(exercises.check_video_axial_cost(scores=4096), "should be a function")
    assert _wrong(exercises.check_video_axial_cost(exponent="4/3"), "should be a number")
