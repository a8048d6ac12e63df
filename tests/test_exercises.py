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
