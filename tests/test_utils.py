"""attnlab.utils: device choice, seeding, make_divisible, parameter counts."""
import numpy as np
import pytest
import torch

from attnlab import utils


def test_get_device_prefers_env_then_cuda_mps_cpu(monkeypatch):
    monkeypatch.delenv("ATTNLAB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert utils.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device() == torch.device("cuda")
    monkeypatch.setenv("ATTNLAB_DEVICE", "cpu")
    assert utils.get_device() == torch.device("cpu")
    assert utils.get_device("meta") == torch.device("meta")


def test_seed_everything_repeats_all_three_generators():
    def draw():
        import random
        return random.random(), np.random.rand(), torch.rand(3)
    utils.seed_everything(7)
    a = draw()
    utils.seed_everything(7)
    b = draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert utils.seed_everything(3) == 3


def test_seed_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ATTNLAB_SEED", raising=False)
    assert utils.default_seed() == 0 and utils.seed_everything() == 0
    monkeypatch.setenv("ATTNLAB_SEED", "4")
    assert utils.seed_everything() == 4
    a = torch.rand(3)
    utils.seed_everything(4)
    assert torch.equal(a, torch.rand(3))
    monkeypatch.setenv("ATTNLAB_SEED", "four")
    with pytest.raises(ValueError, match="ATTNLAB_SEED"):
        utils.seed_everything()
    with pytest.raises(TypeError, match="seed must be an int"):
        utils.seed_everything(1.5)


@pytest.mark.parametrize("value, divisor, expected", [(64 / 16, 8, 8), (256 / 16, 8, 16), (100, 8, 104),
                                                      (33, 8, 32), (10, 1, 10), (1, 8, 8)])
def test_make_divisible(value, divisor, expected):
    assert utils.make_divisible(value, divisor) == expected


def test_make_divisible_never_drops_more_than_ten_percent():
    for v in range(1, 500):
        assert utils.make_divisible(v, 8) >= 0.9 * v
    with pytest.raises(ValueError, match="divisor"):
        utils.make_divisible(10, 0)


def test_count_parameters():
    m = torch.nn.Linear(3, 4)
    assert utils.count_parameters(m) == 16
    m.bias.requires_grad_(False)
    assert utils.count_parameters(m) == 12
    assert utils.count_parameters(m, trainable_only=False) == 16


# --- bad input, one class at a time (issue #28) ----------------------------------------------

@pytest.mark.parametrize("call, error, words", [
    (lambda: utils.get_device("gpu"), ValueError, "prefer must name a device"),
    (lambda: utils.get_device(0), TypeError, "prefer must be a device name"),
    (lambda: utils.seed_everything("1"), TypeError, "seed must be an int"),
    (lambda: utils.seed_everything(True), TypeError, "seed must be an int"),
    (lambda: utils.make_divisible(float("nan")), ValueError, "value must be a finite number"),
    (lambda: utils.make_divisible(-5), ValueError, "value must be >= 0"),
    (lambda: utils.make_divisible("8"), TypeError, "value must be a number"),
    (lambda: utils.make_divisible(10, 2.5), TypeError, "divisor must be an int"),
    (lambda: utils.make_divisible(10, 8, min_value=0), ValueError, "min_value must be >= 1"),
    (lambda: utils.make_divisible(10, 8, round_limit=1.5), ValueError, "round_limit must be in"),
    (lambda: utils.count_parameters([torch.nn.Linear(2, 2)]), TypeError, "module must be"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_get_device_refuses_a_device_the_machine_does_not_have(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="prefer asks for 'cuda'"):
        utils.get_device("cuda")
    monkeypatch.setenv("ATTNLAB_DEVICE", "cuda:1")
    with pytest.raises(ValueError, match="ATTNLAB_DEVICE asks for 'cuda:1'"):
        utils.get_device()
    monkeypatch.setenv("ATTNLAB_DEVICE", "tpu-please")
    with pytest.raises(ValueError, match="ATTNLAB_DEVICE must name a device"):
        utils.get_device()


def test_numpy_integers_are_seeds_too():
    assert utils.seed_everything(np.int64(5)) == 5 and type(utils.seed_everything(np.int64(5))) is int
