r"""Measuring what attention costs: time, memory kept for backward, peak memory of a forward pass.

Three numbers, each measured, none estimated:

- :func:`seconds`: the fastest of a few forward (+ backward) passes after a warm-up;
- :func:`saved_bytes`: the bytes of the tensors autograd *keeps* for the backward pass, the
  activation memory a layer holds between forward and backward (exact, machine-independent);
- :func:`peak_bytes`: the largest total of tensor bytes alive at once during a call, counted by
  intercepting every tensor an operation creates (works on the CPU, where PyTorch keeps no
  peak-memory statistics; on CUDA ``torch.cuda.max_memory_allocated`` says the same).

Taught in: :ref:`chap-efficient-attention`.
"""
from __future__ import annotations

import time
import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from attnlab import checks

__all__ = ["seconds", "saved_bytes", "peak_bytes"]


def seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` (>= 1) calls of ``fn`` after one warm-up call, in seconds."""
    checks.function(fn, "fn"), checks.positive_int(repeats, "repeats")
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def saved_bytes(forward: Callable[[], torch.Tensor], exclude: tuple = ()) -> int:
    """Bytes of the tensors autograd saves for backward during one call of ``forward()``.

    Each storage is counted once; storages shared with ``exclude`` (a tuple or list of tensors:
    parameters, inputs) are left out.
    """
    checks.function(forward, "forward")
    if not isinstance(exclude, (tuple, list)) or \
            not all(isinstance(t, torch.Tensor) for t in exclude):
        raise TypeError(f"exclude must be a tuple of tensors, got {exclude!r:.60}")
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t):
        if t.layout == torch.strided:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in skip:
                seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(seen.values())


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of storages that operations create, while they are alive."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self.alive: set[int] = set()

    def _freed(self, ptr: int, nbytes: int) -> None:
        self.alive.discard(ptr)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.layout == torch.strided}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
                continue
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes and ptr not in self.alive and ptr not in inputs:  # new, not a view
                self.alive.add(ptr)
                self.current += nbytes
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._freed, ptr, nbytes)  # when it is freed
        return out


def peak_bytes(fn: Callable[[], object]) -> int:
    """The peak of tensor bytes alive at once while ``fn()`` runs (inputs not counted).

    Runs ``fn`` without gradients (a forward pass, as at inference): only the temporaries and the
    result count, not what autograd would keep. Every tensor an operation creates is counted
    from its creation until it is freed.
    """
    checks.function(fn, "fn")
    with torch.no_grad(), _LiveBytes() as live:
        out = fn()
    del out
    return live.peak
