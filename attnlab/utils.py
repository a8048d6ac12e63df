"""Small helpers shared by every chapter: device choice, seeding, widths.

Taught in: every notebook's first cell (see :doc:`/book/how_to_run`).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "default_seed", "seed_everything", "make_divisible", "count_parameters"]


def get_device(prefer: str | None = None) -> torch.device:
    """Pick where tensors live: CUDA, then Apple MPS, then the CPU.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"mps"``). The environment
            variable ``ATTNLAB_DEVICE`` does the same without editing a notebook.
    """
    prefer = prefer or os.environ.get("ATTNLAB_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_seed() -> int:
    """The seed a notebook runs with: the environment variable ``ATTNLAB_SEED``, default 0.

    The robustness run (``make robustness``) sets it to run every chapter over several seeds.
    """
    raw = os.environ.get("ATTNLAB_SEED", "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"ATTNLAB_SEED must be an integer, got {raw!r}") from None


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and PyTorch so a run repeats on the same machine; return the seed.

    Args:
        seed: the seed; ``None`` reads :func:`default_seed` (``ATTNLAB_SEED``, default 0).
    """
    seed = default_seed() if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor``, never below ``round_limit * value``.

    The rule used by MobileNet-style reduced widths (and by timm's layers).
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return new


def count_parameters(module: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
