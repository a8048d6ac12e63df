"""Small helpers shared by every chapter: device choice, seeding, widths.

Taught in: every notebook's first cell (see :doc:`/book/how_to_run`).
"""
from __future__ import annotations

import numbers
import os
import random

import numpy as np
import torch

from attnlab import checks

__all__ = ["get_device", "default_seed", "seed_everything", "make_divisible", "count_parameters"]


def get_device(prefer: str | None = None) -> torch.device:
    """Pick where tensors live: CUDA, then Apple MPS, then the CPU.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a
            ``torch.device``). The environment variable ``ATTNLAB_DEVICE`` does the same without
            editing a notebook. A device this machine does not have is refused here, not at the
            first tensor moved to it.
    """
    if prefer is not None and not isinstance(prefer, (str, torch.device)):
        raise TypeError(f"prefer must be a device name or a torch.device, got "
                        f"{type(prefer).__name__}")
    name = "prefer" if prefer else "ATTNLAB_DEVICE"
    prefer = prefer or os.environ.get("ATTNLAB_DEVICE")
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"{name} must name a device such as 'cpu', 'cuda' or 'mps', "
                             f"got {str(prefer)!r}") from None
        mps = getattr(torch.backends, "mps", None)
        if (device.type == "cuda" and not torch.cuda.is_available()) or \
                (device.type == "mps" and not (mps is not None and mps.is_available())):
            raise ValueError(f"{name} asks for {str(prefer)!r}, which this machine does not have")
        return device
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
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor``, never below ``round_limit * value``.

    The rule used by MobileNet-style reduced widths (and by timm's layers). ``value`` is a
    finite number >= 0, ``divisor`` and ``min_value`` (default: ``divisor``) ints >= 1,
    ``round_limit`` a number in [0, 1].
    """
    if checks.number(value, "value") < 0:
        raise ValueError(f"value must be >= 0, got {value}")
    checks.positive_int(divisor, "divisor")
    if min_value is not None:
        checks.positive_int(min_value, "min_value")
    if not 0 <= checks.number(round_limit, "round_limit") <= 1:
        raise ValueError(f"round_limit must be in [0, 1], got {round_limit}")
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return new


def count_parameters(module: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
