"""attnlab.data: generators are seeded, offline and shaped as documented."""
import pytest
import torch

from attnlab import data


def test_kernel_regression_data_is_seeded_and_shaped():
    a = data.kernel_regression_data(n_train=30, n_test=40, seed=3)
    b = data.kernel_regression_data(n_train=30, n_test=40, seed=3)
    c = data.kernel_regression_data(n_train=30, n_test=40, seed=4)
    assert [t.shape for t in a] == [(30,), (30,), (40,), (40,)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    x_train, y_train, x_test, y_test = a
    assert torch.all(x_train[1:] >= x_train[:-1]) and x_train.min() >= 0 and x_train.max() <= 5
    torch.testing.assert_close(y_test, data.regression_target(x_test))
    noiseless = data.kernel_regression_data(n_train=30, noise=0.0, seed=3)
    torch.testing.assert_close(noiseless[1], data.regression_target(noiseless[0]))


def test_kernel_regression_data_errors():
    with pytest.raises(ValueError, match="n_train"):
        data.kernel_regression_data(n_train=1)
    with pytest.raises(ValueError, match="noise"):
        data.kernel_regression_data(noise=-1)
    with pytest.raises(TypeError, match="seed"):
        data.kernel_regression_data(seed="x")
