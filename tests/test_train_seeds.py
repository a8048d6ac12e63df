"""train_seeds: one model per seed, the same budget, reproducible."""
import pytest
import torch

from attnlab.train import train_seeds


def test_train_seeds_repeats_per_seed_and_differs_between_seeds():
    X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    Y = (X[:, 0] > 0).long()
    a = train_seeds(lambda: torch.nn.Linear(3, 2), (X, Y), [0, 1], steps=5, batch_size=16)
    b = train_seeds(lambda: torch.nn.Linear(3, 2), (X, Y), [0, 1], steps=5, batch_size=16)
    assert len(a) == 2 and not a[0].training
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[1].weight, b[1].weight)
    assert not torch.equal(a[0].weight, a[1].weight)
    with pytest.raises(ValueError, match="at least one seed"):
        train_seeds(lambda: torch.nn.Linear(3, 2), (X, Y), [], steps=5)
