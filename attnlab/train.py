r"""A small, transparent fit loop: sample a batch, compute the loss, step. Nothing hidden.

Used by every chapter that trains a model. ``data`` is either a tuple of tensors ``(X, Y)``, from
which minibatches are drawn with a seeded generator, or a callable ``sample(batch_size,
generator) -> (x, y)`` that makes fresh synthetic batches.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from attnlab import checks

__all__ = ["fit", "evaluate", "accuracy"]


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (B, K) or (B, T, K) logits (class dimension last)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def _check_data(data) -> None:
    """``data`` is a sampler, or ``(X, Y)`` tensors of the same, non-zero length."""
    if callable(data):
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        raise TypeError("data must be a tuple (X, Y) of tensors or a callable sample(batch_size, "
                        f"generator), got {type(data).__name__}")
    X, Y = data
    if X.dim() == 0 or Y.dim() == 0 or len(X) != len(Y):
        raise ValueError(f"X and Y must have the same length, got shapes {tuple(X.shape)} and "
                         f"{tuple(Y.shape)}")
    checks.not_empty(X, "X", "example")


def _batches(data, batch_size: int, generator: torch.Generator):
    _check_data(data)
    if callable(data):
        while True:
            yield data(batch_size, generator)
    X, Y = data
    while True:
        idx = torch.randint(len(X), (batch_size,), generator=generator)
        yield X[idx], Y[idx]


def fit(model: torch.nn.Module, data, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
        loss_fn: Callable | None = None, device=None, weight_decay: float = 0.0,
        generator: torch.Generator | None = None, progress: bool = True,
        log_every: int | None = None, foreach: bool | None = None, warmup: int = 0) -> dict:
    r"""Train ``model`` with Adam(W) for ``steps`` minibatches; returns ``{"step": [...], "loss": [...]}``.

    Args:
        data: ``(X, Y)`` tensors of the same length (at least one example) or a callable
            ``sample(batch_size, generator) -> (x, y)``; ``x`` may be a tuple of tensors, passed
            to the model as separate arguments.
        steps, batch_size: ints >= 1. ``lr``: a finite number > 0; ``weight_decay``: >= 0.
        loss_fn: ``loss_fn(output, y)``; default cross-entropy over the last dimension.
        device: where to train (default: where the model's parameters are).
        generator: the random stream for batches (default: seeded with 0, so runs repeat).
        progress: show a progress bar (tqdm) with the running loss.
        log_every: record the mean loss every this many steps (default ``steps // 50``).
        foreach: let AdamW update all parameters in a few batched calls (faster for models with
            many small tensors; PyTorch's default on the CPU is one parameter at a time).
        warmup: steps of linear learning-rate warm-up, :math:`\mathrm{lr}_t = \mathrm{lr}
            \cdot \min(1, t / \mathrm{warmup})` for step :math:`t = 1, 2, \dots` (0: none), as
            post-norm Transformers are trained (Xiong et al., On Layer Normalization in the
            Transformer Architecture, 2020, arXiv:2002.04745); taught in
            :ref:`chap-cross-attention`.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters to train")
    checks.positive_int(steps, "steps"), checks.positive_int(batch_size, "batch_size")
    checks.positive(lr, "lr")
    if checks.number(weight_decay, "weight_decay") < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if loss_fn is not None:
        checks.function(loss_fn, "loss_fn")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if log_every is not None:
        checks.positive_int(log_every, "log_every")
    warmup = checks.non_negative_int(warmup, "warmup")
    _check_data(data)
    loss_fn = loss_fn or _cross_entropy
    generator = generator or torch.Generator().manual_seed(0)
    device = torch.device(device) if device is not None else params[0].device
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=foreach)
    log_every = log_every or max(1, steps // 50)
    history = {"step": [], "loss": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc="training", leave=True, mininterval=0.5)
    running, batches = 0.0, _batches(data, batch_size, generator)
    for step in range(1, steps + 1):
        if warmup:
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, step / warmup)
        x, y = next(batches)
        inputs = x if isinstance(x, (tuple, list)) else (x,)  # a model may take several inputs
        loss = loss_fn(model(*(t.to(device) for t in inputs)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item()
        if step % log_every == 0 or step == steps:
            n = step - (history["step"][-1] if history["step"] else 0)
            history["step"].append(step)
            history["loss"].append(running / n)
            running = 0.0
            if bar is not None:
                bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return history


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of correct argmax predictions; works for (B, K) and (B, T, K) logits.

    ``target`` holds integer classes in ``[0, K)`` of shape ``logits.shape[:-1]`` exactly (a
    ``(B, 1)`` target is refused: it would broadcast against ``(B,)`` predictions to ``(B, B)``).
    """
    checks.tensor(logits, "logits")
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (B, K) or (B, T, K), got {tuple(logits.shape)}")
    checks.not_empty(logits, "logits", "prediction")
    letters = "(B,)" if logits.dim() == 2 else "logits.shape[:-1]"
    checks.ids(target, "target", logits.shape[-1], logits.shape[:-1], letters)
    return (logits.argmax(-1) == target).float().mean().item()


@torch.no_grad()
def evaluate(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, *, metric="accuracy",
             batch_size: int = 512, device=None) -> float:
    """Evaluate ``model`` on ``(X, Y)`` in batches; ``metric`` is ``"accuracy"`` or a callable.

    A callable metric gets the concatenated outputs and targets: ``metric(outputs, Y)``.
    ``X`` and ``Y`` are tensors of the same length, at least one example.
    """
    if isinstance(metric, str):
        metric = {"accuracy": accuracy}[checks.one_of(metric, "metric", ("accuracy",))]
    elif not callable(metric):
        raise TypeError(f"metric must be 'accuracy' or a callable, got {type(metric).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_data((X, Y))
    checks.positive_int(batch_size, "batch_size")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = torch.device(device)
    model.eval()
    outs = [model(X[i:i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
    return float(metric(torch.cat(outs), Y.cpu()))


def train_seeds(make_model: Callable[[], torch.nn.Module], data, seeds, *, steps: int,
                **fit_kwargs) -> list:
    """Train one model per seed with the same budget; return the models (in eval mode).

    Where the spread over seeds is the size of an effect, one run cannot carry a comparison:
    train a few seeds and report (and assert) the mean and the range. For each seed ``s``,
    everything is seeded with ``s`` before ``make_model()`` builds the model (its initial
    weights), and :func:`fit` draws its batches from a generator seeded with ``s``, so a
    configuration trained over the same seeds sees the same batches.

    Args:
        make_model: builds a fresh, untrained model.
        data: as for :func:`fit`.
        seeds: the seeds, e.g. ``range(SEED, SEED + 3)``.
        steps: training steps per seed; ``fit_kwargs``: passed to :func:`fit` (``progress``
            defaults to False).
    """
    from .utils import seed_everything

    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    fit_kwargs.setdefault("progress", False)
    models = []
    for s in seeds:
        seed_everything(int(s))
        model = make_model()
        fit(model, data, steps=steps, generator=torch.Generator().manual_seed(int(s)), **fit_kwargs)
        models.append(model.eval())
    return models


__all__ += ["train_seeds"]
