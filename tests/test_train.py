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


# --- bad input, one class at a time (issue #28) ----------------------------------------------

_X, _Y = linear_task(8)
_LIN = torch.nn.Linear(4, 2)


@pytest.mark.parametrize("call, error, words", [
    # fit: the model, the data, the counts and rates
    (lambda: train.fit(lambda x: x, (_X, _Y), steps=2), TypeError, "model must be a torch.nn.Module"),
    (lambda: train.fit(torch.nn.ReLU(), (_X, _Y), steps=2), ValueError, "no parameters"),
    (lambda: train.fit(_LIN, (_X.tolist(), _Y.tolist()), steps=2), TypeError, "data must be"),
    (lambda: train.fit(_LIN, (_X[:0], _Y[:0]), steps=2), ValueError, "X must hold at least one"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2.5), TypeError, "steps must be an int"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, batch_size=0), ValueError, "batch_size must be >= 1"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, lr=0), ValueError, "lr must be a positive number"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, lr=float("nan")), ValueError, "lr must be a finite"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, weight_decay=-1), ValueError, "weight_decay"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, loss_fn="mse"), TypeError, "loss_fn must be"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, generator=0), TypeError, "generator must be"),
    (lambda: train.fit(_LIN, (_X, _Y), steps=2, log_every=0.5), TypeError, "log_every must be"),
    # accuracy: the target's shape, kind and range; an empty batch
    (lambda: train.accuracy(torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long)), ValueError,
     r"target must have shape \(B,\) = \(4,\)"),
    (lambda: train.accuracy(torch.randn(4, 5, 3), torch.zeros(4, 1, dtype=torch.long)), ValueError,
     "target must have shape logits.shape"),
    (lambda: train.accuracy(torch.randn(4, 3), torch.zeros(4)), TypeError, "target must hold integer"),
    (lambda: train.accuracy(torch.randn(4, 3), [0, 1, 2, 0]), TypeError, "target must be a torch"),
    (lambda: train.accuracy(torch.randn(4, 3), torch.full((4,), 3)), ValueError,
     r"target must lie in \[0, 3\)"),
    (lambda: train.accuracy(torch.randn(0, 3), torch.zeros(0, dtype=torch.long)), ValueError,
     "at least one prediction"),
    (lambda: train.accuracy(torch.randn(4), torch.zeros(4, dtype=torch.long)), ValueError,
     r"logits must have shape \(B, K\)"),
    # evaluate
    (lambda: train.evaluate(_LIN, _X, _Y, metric=3), TypeError, "metric must be"),
    (lambda: train.evaluate(_LIN, _X, _Y[:3]), ValueError, "same length"),
    (lambda: train.evaluate(_LIN, _X[:0], _Y[:0]), ValueError, "at least one example"),
    (lambda: train.evaluate(_LIN, _X, _Y, batch_size=0), ValueError, "batch_size must be >= 1"),
    (lambda: train.evaluate(_LIN, _X.tolist(), _Y), TypeError, "data must be"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_accuracy_of_a_b_by_1_target_is_refused_not_broadcast():
    """Issue #28: a (B, 1) target broadcast against (B,) predictions to (B, B) and gave 0.3125
    where the true accuracy was 0.75."""
    logits = torch.eye(4)[[0, 1, 2, 0]] * 5  # predicts 0, 1, 2, 0
    target = torch.tensor([0, 1, 2, 3])
    assert train.accuracy(logits, target) == 0.75
    with pytest.raises(ValueError, match="target must have shape"):
        train.accuracy(logits, target[:, None])


def test_warmup_raises_the_learning_rate_linearly_then_holds_it(monkeypatch):
    X, Y = linear_task()
    opts, seen = [], []
    real_adamw = torch.optim.AdamW

    def adamw(*args, **kwargs):
        opts.append(real_adamw(*args, **kwargs))
        return opts[-1]

    class Spy(torch.nn.Linear):
        def forward(self, x):                      # the rate in force for this step's update
            seen.append(opts[0].param_groups[0]["lr"])
            return super().forward(x)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    train.fit(Spy(4, 2), (X, Y), steps=6, lr=0.4, warmup=4, progress=False)
    assert seen == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_warmup_zero_is_the_plain_loop_and_bad_values_are_refused():
    X, Y = linear_task()
    runs = []
    for warmup in (0, None):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        kwargs = {} if warmup is None else {"warmup": warmup}
        runs.append(train.fit(model, (X, Y), steps=20, lr=0.05, progress=False, **kwargs)["loss"])
    assert runs[0] == runs[1]
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="warmup"):
        train.fit(model, (X, Y), steps=5, warmup=-1, progress=False)
    with pytest.raises(TypeError, match="warmup"):
        train.fit(model, (X, Y), steps=5, warmup=2.5, progress=False)
