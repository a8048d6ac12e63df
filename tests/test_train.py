"""attnlab.train: the fit loop learns, repeats with a seed, and evaluates."""
import pytest
import torch

from attnlab import train


def linear_task(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] > 0).long()


def test_fit_learns_a_separable_task_from_tensors():
    torch.manual_seed(0)
    X, Y = linear_task()
    model = torch.nn.Linear(4, 2)
    before = train.evaluate(model, X, Y)
    hist = train.fit(model, (X, Y), steps=200, lr=0.05, progress=False)
    after = train.evaluate(model, X, Y)
    assert after > 0.95 and after > before
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["step"][-1] == 200 and len(hist["step"]) == len(hist["loss"])


def test_fit_with_a_sampler_and_sequence_logits():
    def sample(batch_size, generator):
        x = torch.randint(0, 5, (batch_size, 6), generator=generator)
        return x, x  # copy task: (B, T) -> (B, T, K) logits
    torch.manual_seed(0)
    model = torch.nn.Embedding(5, 5)
    train.fit(model, sample, steps=150, lr=0.1, progress=False)
    x, _ = sample(64, torch.Generator().manual_seed(1))
    assert train.evaluate(model, x, x) == 1.0


def test_same_seed_same_numbers():
    X, Y = linear_task()
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        losses.append(train.fit(model, (X, Y), steps=30, progress=False)["loss"])
    assert losses[0] == losses[1]


def test_progress_bar_runs():
    X, Y = linear_task(32)
    train.fit(torch.nn.Linear(4, 2), (X, Y), steps=3, progress=True)


def test_errors():
    X, Y = linear_task(8)
    with pytest.raises(ValueError, match="steps"):
        train.fit(torch.nn.Linear(4, 2), (X, Y), steps=0)
    with pytest.raises(TypeError, match="data must be"):
        train.fit(torch.nn.Linear(4, 2), X, steps=1, progress=False)
    with pytest.raises(ValueError, match="same length"):
        train.fit(torch.nn.Linear(4, 2), (X, Y[:3]), steps=1, progress=False)
    with pytest.raises(ValueError, match="metric"):
        train.evaluate(torch.nn.Linear(4, 2), X, Y, metric="f1")


def test_evaluate_with_a_callable_metric():
    X, Y = linear_task(10)
    mse = train.evaluate(torch.nn.Linear(4, 2), X, Y, metric=lambda out, y: out.square().mean())
    assert mse > 0
