r"""A small, transparent fit loop: sample a batch, compute the loss, step. Nothing hidden.

Used by every chapter that trains a model. ``data`` is either a tuple of tensors ``(X, Y)``, from
which minibatches are drawn with a seeded generator, or a callable ``sample(batch_size,
generator) -> (x, y)`` that makes fresh synthetic batches.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["fit", "evaluate", "accuracy"]


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (B, K) or (B, T, K) logits (class dimension last)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def _batches(data, batch_size: int, generator: torch.Generator):
    if callable(data):
        while True:
            yield data(batch_size, generator)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("data must be a tuple (X, Y) of tensors or a callable sample(batch_size, generator)")
    X, Y = data
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have the same length, got {len(X)} and {len(Y)}")
    while True:
        idx = torch.randint(len(X), (batch_size,), generator=generator)
        yield X[idx], Y[idx]


def fit(model: torch.nn.Module, data, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
        loss_fn: Callable | None = None, device=None, weight_decay: float = 0.0,
        generator: torch.Generator | None = None, progress: bool = True,
        log_every: int | None = None, foreach: bool | None = None) -> dict:
    """Train ``model`` with Adam(W) for ``steps`` minibatches; returns ``{"step": [...], "loss": [...]}``.

    Args:
        data: ``(X, Y)`` tensors or a callable ``sample(batch_size, generator) -> (x, y)``; ``x``
            may be a tuple of tensors, passed to the model as separate arguments.
        loss_fn: ``loss_fn(output, y)``; default cross-entropy over the last dimension.
        device: where to train (default: where the model's parameters are).
        generator: the random stream for batches (default: seeded with 0, so runs repeat).
        progress: show a progress bar (tqdm) with the running loss.
        log_every: record the mean loss every this many steps (default ``steps // 50``).
        foreach: let AdamW update all parameters in a few batched calls (faster for models with
            many small tensors; PyTorch's default on the CPU is one parameter at a time).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    loss_fn = loss_fn or _cross_entropy
    generator = generator or torch.Generator().manual_seed(0)
    device = torch.device(device) if device is not None else next(model.parameters()).device
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
    """Fraction of correct argmax predictions; works for (B, K) and (B, T, K) logits."""
    return (logits.argmax(-1) == target).float().mean().item()


@torch.no_grad()
def evaluate(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, *, metric="accuracy",
             batch_size: int = 512, device=None) -> float:
    """Evaluate ``model`` on ``(X, Y)`` in batches; ``metric`` is ``"accuracy"`` or a callable.

    A callable metric gets the concatenated outputs and targets: ``metric(outputs, Y)``.
    """
    if metric == "accuracy":
        metric = accuracy
    elif not callable(metric):
        raise ValueError(f"metric must be 'accuracy' or a callable, got {metric!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
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
        steps, **fit_kwargs: passed to :func:`fit` (``progress`` defaults to False).
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
