"""The grader's wire format: answers, inputs and outputs as JSON data, read back with limits.

Self-contained (torch and the standard library only) because the grader's sandbox for students'
functions loads this file without the rest of attnlab. :func:`encode` turns a value into JSON
data: numbers, strings, ``None`` and ``...`` as they are, a tensor as its raw bytes (base64)
with its dtype and shape, tuples, lists and dicts as tagged lists; a function goes through the
``function`` callback (the notebook side pickles it). :func:`decode` reads such data back and
trusts nothing in it: it checks every tag, dtype, shape and size and raises :class:`WireError`
for anything else, so that a forged record can only be a wrong answer.
"""
from __future__ import annotations

import base64
import binascii
import math
import numbers
import struct

import torch

DTYPES = {name: getattr(torch, name) for name in (
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "int8", "int16", "int32", "int64", "uint8", "bool")}
MAX_DEPTH = 24                 # nesting of lists, tuples and dicts
MAX_ITEMS = 1_000_000          # containers' entries, in all
MAX_BYTES = 64 * 2**20         # tensor bytes, in all
MAX_STRING = 100_000           # characters of one string


class WireError(ValueError):
    """Data that is not in the wire format (or over its limits)."""


class Opaque:
    """Stands for a value the wire could not carry (an object of another kind)."""

    def __init__(self, kind: str = "object"):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


def encode(x, function=None, _depth: int = 0):
    """``x`` as JSON data; ``function(f)`` gives the data for a function (else it is opaque)."""
    if _depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**63 else float(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if x is Ellipsis:
        return {"__ellipsis__": True}
    if isinstance(x, torch.Tensor):
        return _tensor(x)
    if isinstance(x, numbers.Real):                                  # numpy scalars, Fraction
        return encode(float(x), function, _depth)
    if hasattr(x, "__array__") and hasattr(x, "dtype") and not callable(x):
        try:                                                         # numpy arrays stay numpy
            return {"__ndarray__": _tensor(torch.as_tensor(x))}
        except (TypeError, ValueError, RuntimeError):
            return {"__object__": type(x).__name__}
    if isinstance(x, tuple):
        return {"__tuple__": [encode(v, function, _depth + 1) for v in x]}
    if isinstance(x, list):
        return [encode(v, function, _depth + 1) for v in x]
    if isinstance(x, dict):
        return {"__dict__": [[encode(k, function, _depth + 1), encode(v, function, _depth + 1)]
                             for k, v in x.items()]}
    if callable(x) and not isinstance(x, type) and function is not None:
        return function(x)
    return {"__object__": type(x).__name__[:100]}


def _tensor(t: torch.Tensor) -> dict:
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name not in DTYPES:
        return {"__object__": f"tensor of dtype {name}"}
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return {"__tensor__": base64.b64encode(raw).decode("ascii"), "dtype": name,
            "shape": list(t.shape)}


def decode(x, function=None):
    """The value of wire data ``x``; ``function(data)`` makes a function's stand-in (else a
    function is opaque). Raises :class:`WireError` for anything not in the format."""
    return _Decoder(function).value(x, 0)


class _Decoder:
    def __init__(self, function):
        self.function, self.items, self.bytes = function, 0, 0

    def count(self, n: int = 1) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise WireError("too many entries")

    def value(self, x, depth: int):
        if depth > MAX_DEPTH:
            raise WireError("nested too deeply")
        self.count()
        if x is None or isinstance(x, (bool, int, float)):
            if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= 2**63:
                raise WireError("integer out of range")
            return x
        if isinstance(x, str):
            if len(x) > MAX_STRING:
                raise WireError("string too long")
            return x
        if isinstance(x, list):
            return [self.value(v, depth + 1) for v in x]
        if not isinstance(x, dict) or len(x) > 3:
            raise WireError(f"unexpected {type(x).__name__}")
        if "__tensor__" in x:
            return self.tensor(x)
        if "__ndarray__" in x and len(x) == 1:
            t = self.value(x["__ndarray__"], depth + 1)
            if not isinstance(t, torch.Tensor):
                raise WireError("an array that is not a tensor")
            return t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()
        if "__tuple__" in x and len(x) == 1 and isinstance(x["__tuple__"], list):
            return tuple(self.value(v, depth + 1) for v in x["__tuple__"])
        if "__dict__" in x and len(x) == 1 and isinstance(x["__dict__"], list):
            out = {}
            for pair in x["__dict__"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise WireError("a dict entry that is not a pair")
                key = self.value(pair[0], depth + 1)
                try:
                    out[key] = self.value(pair[1], depth + 1)
                except TypeError as e:                              # an unhashable key
                    raise WireError(str(e)) from None
            return out
        if x.get("__ellipsis__") is True and len(x) == 1:
            return ...
        if "__float__" in x and len(x) == 1 and x["__float__"] in ("nan", "inf", "-inf"):
            return float(x["__float__"])
        if "__object__" in x and len(x) == 1 and isinstance(x["__object__"], str):
            return Opaque(x["__object__"][:100])
        if "__function__" in x:
            if self.function is None:
                return Opaque("function")
            return self.function(x)
        raise WireError("unknown tag")

    def tensor(self, x: dict):
        dtype, shape, data = x.get("dtype"), x.get("shape"), x.get("__tensor__")
        if dtype not in DTYPES or not isinstance(data, str) or not isinstance(shape, list) \
                or len(shape) > 16 or not all(isinstance(n, int) and not isinstance(n, bool)
                                              and 0 <= n < 2**40 for n in shape):
            raise WireError("a malformed tensor")
        size = math.prod(shape) * torch.empty((), dtype=DTYPES[dtype]).element_size()
        self.bytes += size
        if self.bytes > MAX_BYTES or len(data) > 4 * MAX_BYTES // 3 + 4:
            raise WireError("tensors too large")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise WireError("a tensor's bytes are not base64") from None
        if len(raw) != size:
            raise WireError("a tensor's bytes do not match its shape")
        if not size:
            return torch.empty(shape, dtype=DTYPES[dtype])
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(DTYPES[dtype]) \
            .reshape(shape).clone()


# --- frames: length-prefixed JSON messages between the grader's processes ---------------------

def pack(message: bytes) -> bytes:
    """One frame: a 4-byte big-endian length, then the message."""
    return struct.pack(">I", len(message)) + message


def unpack_length(header: bytes) -> int:
    return struct.unpack(">I", header)[0]
