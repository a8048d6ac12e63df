r"""Argument checks shared by every mechanism: one rule, one message, one exception type.

A value of the wrong *type* (a list for a tensor, a float for a count, an integer image) raises
:class:`TypeError`; a value of the right type but the wrong *value or shape* raises
:class:`ValueError`. Every message names the argument and says what was expected. The modules
call these once, at their boundary; nothing below re-checks.

This module depends on torch alone.
"""
from __future__ import annotations

import numbers

import torch

__all__ = ["positive_int", "probability", "one_of", "odd", "tensor", "sequence", "feature_map",
           "mask_for"]


def positive_int(value, name: str) -> int:
    """``value`` as an ``int`` if it is a whole number >= 1 (a NumPy integer too; not a bool)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def odd(value, name: str) -> int:
    """``value`` if it is a positive odd int (a kernel that keeps the map's size)."""
    positive_int(value, name)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (so the map keeps its size), got {value}")
    return value


def probability(value, name: str) -> float:
    """``value`` if it is a number in [0, 1) (a dropout rate)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def one_of(value, name: str, options) -> str:
    """``value`` if it is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def tensor(x, name: str) -> torch.Tensor:
    """``x`` if it is a floating-point tensor (integer images and lists are refused)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point (float16/bfloat16/float32/float64), "
                        f"got dtype {x.dtype}; convert it, e.g. {name}.float()")
    return x


def sequence(x, name: str, width: int | None = None) -> torch.Tensor:
    """``x`` if it is a float ``(B, length, width)`` tensor."""
    tensor(x, name)
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, length, width), got {tuple(x.shape)}")
    if width is not None and x.shape[-1] != width:
        raise ValueError(f"{name} must have width {width} in its last dimension, "
                         f"got {x.shape[-1]}")
    return x


def feature_map(x, name: str = "x", channels: int | None = None, spatial: int = 2) -> torch.Tensor:
    """``x`` if it is a float ``(B, C, *spatial)`` tensor with ``spatial`` non-empty sizes."""
    tensor(x, name)
    letters = {1: "(B, C, T)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}[spatial]
    if x.dim() != spatial + 2:
        raise ValueError(f"{name} must have shape {letters}, got {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (shape {letters}), "
                         f"got {tuple(x.shape)}")
    if any(s == 0 for s in x.shape[2:]):
        raise ValueError(f"{name} must have at least one position along every spatial "
                         f"dimension {letters}, got {tuple(x.shape)}")
    return x


def mask_for(mask, shape, name: str = "mask") -> torch.Tensor:
    """``mask`` if it is bool or float and broadcasts *to* ``shape`` (never beyond it)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (bool or float), got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool (True = may attend) or floating point (added to "
                        f"the scores), got dtype {mask.dtype}")
    shape = tuple(shape)
    try:
        ok = tuple(torch.broadcast_shapes(mask.shape, shape)) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to the scores' "
                         f"shape (..., T, S) = {shape}")
    return mask
