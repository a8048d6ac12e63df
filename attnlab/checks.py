r"""Argument checks shared by every mechanism: one rule, one message, one exception type.

A value of the wrong *type* (a list for a tensor, a float for a count, an integer image) raises
:class:`TypeError`; a value of the right type but the wrong *value or shape* raises
:class:`ValueError`. Every message names the argument and says what was expected. The modules
call these once, at their boundary; nothing below re-checks.

This module depends on torch alone.
"""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["positive_int", "probability", "one_of", "odd", "tensor", "sequence", "feature_map",
           "mask_for", "int_at_least", "non_negative_int", "number", "positive", "non_negative",
           "function", "ids", "not_empty", "bool_mask", "int_pair"]


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


# --- added for the chapters after the first seven: the same two rules, a few more kinds ------

def int_at_least(value, name: str, low: int) -> int:
    """``value`` as an ``int`` if it is a whole number >= ``low`` (a NumPy integer too)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    """``value`` as an ``int`` if it is a whole number >= 0 (a NumPy integer too; not a bool)."""
    return int_at_least(value, name, 0)


def number(value, name: str) -> float:
    """``value`` as a ``float`` if it is a finite real number (int, float, NumPy; not a bool)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def positive(value, name: str) -> float:
    """``value`` as a ``float`` if it is a finite number > 0 (a temperature, a scale, a rate)."""
    if number(value, name) <= 0:
        raise ValueError(f"{name} must be a positive number (> 0), got {value}")
    return float(value)


def non_negative(value, name: str) -> float:
    """``value`` as a ``float`` if it is a finite number >= 0 (a noise level, a decay)."""
    if number(value, name) < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value}")
    return float(value)


def function(value, name: str):
    """``value`` if it can be called."""
    if not callable(value):
        raise TypeError(f"{name} must be a function (callable), got {type(value).__name__}")
    return value


def ids(x, name: str, size: int, shape=None, letters: str = "") -> torch.Tensor:
    """``x`` if it is an integer tensor of ids in ``[0, size)`` (token ids, classes).

    ``shape`` is checked exactly (``None`` for a size that may be anything); ``letters`` names
    it in the message, e.g. ``"(B, L)"``. The range is checked where that costs nothing, on the
    CPU: on an accelerator it would make every training step wait for the device, and there the
    embedding or ``gather`` stops a bad id itself.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer ids, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids (e.g. torch.long), got dtype {x.dtype}")
    if shape is not None and (x.dim() != len(shape) or
                              any(w is not None and s != w for s, w in zip(x.shape, shape))):
        sizes = tuple("." if w is None else w for w in shape)
        want = letters if all(w is None for w in shape) else f"{letters} = {sizes}".lstrip(" =")
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if x.device.type == "cpu" and x.numel():
        low, high = torch.aminmax(x)
        if low < 0 or high >= size:
            raise ValueError(f"{name} must lie in [0, {size}), got values from {int(low)} "
                             f"to {int(high)}")
    return x


def not_empty(x: torch.Tensor, name: str, what: str = "sample", dim: int = 0) -> torch.Tensor:
    """``x`` if it holds at least one ``what`` along ``dim`` (a mean over nothing is no number)."""
    if x.shape[dim] == 0:
        raise ValueError(f"{name} must hold at least one {what}, got shape {tuple(x.shape)}")
    return x


def bool_mask(mask, name: str, shape) -> torch.Tensor:
    """``mask`` if it is a boolean tensor of exactly ``shape`` (True = takes part)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a boolean torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be boolean (True = takes part), got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask


def int_pair(value, name: str) -> tuple[int, int]:
    """``value`` as a tuple of two ints >= 1 (a grid, a cell size); one int is not a pair."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair of ints (a, b), got {value!r:.60}")
    return tuple(positive_int(v, name) for v in value)
