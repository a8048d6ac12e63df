"""Run one student's function for the grader: the only process that ever calls it when grading.

    python grade_runner.py WIRE_DIR [ATTNLAB_PARENT]   # in its own sandbox (grade_sandbox.py)

It talks in frames (a 4-byte length, then JSON) on stdin and stdout. The first frame is
``{"op": "load", "function": wire data, "forbid": [dotted names]}``; each later one
``{"op": "call", "args": wire, "kwargs": wire}``, answered ``{"result": wire}`` or
``{"raised": name, "message": text}``. It never sees an expected value: the grader's checking
process keeps those and compares.

Its sandbox holds torch, numpy, cloudpickle and the standard library, and *not* attnlab (only
the modules an exercise allows, such as attnlab.functional for chapter 8), so a
function that leans on the library's own reference cannot even be loaded. Before the function is
unpickled, every name in ``forbid`` (the reference the task is checked against, such as
``torch.nn.functional.scaled_dot_product_attention`` or torch's autograd) is replaced, here and
under the same name in torch's other namespaces (:data:`NAMESPACES`, the quantizable modules
included), by something that raises :class:`ReferenceUnavailable`; a name that starts with ``*``
is a pattern (``*attention``: every torch function whose name contains "attention", case and
underscores ignored). While the function runs, a torch function mode
refuses those functions under whatever name they are reached, and what would switch that mode off
or go around it (``torch._C.DisableTorchFunction``, popping the mode stack, looking an operator
up by name; see BLOCKED and GATED) is replaced too, so that a name built from pieces finds a
blocker. A determined student can still
get around torch's guards (they are Python); the instructors' page says so.
"""
from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import time

import torch
from torch.overrides import TorchFunctionMode

IN = OUT = _wire = None              # the frames' streams and the wire format (main() sets them)


class ReferenceUnavailable(Exception):
    """The function called what it is checked against."""


def _message(dotted: str) -> str:
    return (f"{dotted} is what this task is checked against, so it is not available when "
            "grading: compute it yourself")


class _Blocked:
    """Stands where a forbidden function (or class, or engine) was."""

    def __init__(self, dotted: str, message: str | None = None):
        object.__setattr__(self, "_dotted", dotted)
        object.__setattr__(self, "_text", message or _message(dotted))

    def __call__(self, *args, **kwargs):
        raise ReferenceUnavailable(object.__getattribute__(self, "_text"))

    def __getattr__(self, name):
        raise ReferenceUnavailable(object.__getattribute__(self, "_text"))


def _guard_message(dotted: str) -> str:
    return (f"{dotted} can switch off the grader's guards, so it is not available when grading "
            "a task that forbids a reference")


# What switches off or goes around the function mode that refuses the reference: replaced at run
# time (whichever exist) for every task with a forbid list, so that a name built from pieces
# ("".join(...)) finds the blocker too. BLOCKED are replaced outright; GATED (which torch's own
# code uses on every call of a tensor subclass or to look an operator up) keep working when
# called from torch's own files and refuse any other caller.
BLOCKED = {
    "torch._C": ("DisableTorchFunction", "_pop_torch_function_stack",
                 "_push_on_torch_function_stack", "_set_torch_function_mode",
                 "_set_torch_function_state", "_set_skip_next_torch_function",
                 "_get_function_stack_at"),
}
GATED = {
    "torch._C": ("DisableTorchFunctionSubclass", "_get_operation_overload", "_jit_get_operation",
                 "_skip_one_hop_torch_function"),
    "torch.overrides": ("_pop_mode", "_push_mode", "_pop_mode_temporarily",
                        "_get_current_function_mode", "_get_current_function_mode_stack",
                        "_pop_torch_function_stack", "_push_on_torch_function_stack",
                        "_get_function_stack_at", "_set_torch_function_state",
                        "_enable_torch_function"),
}
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _gate(real, dotted: str):
    """``real``, for callers in torch's own files; a refusal for anyone else."""
    import sys as _sys

    def gate(*args, **kwargs):
        caller = _sys._getframe(1)
        if caller.f_code.co_filename.startswith(_TORCH_DIR) and \
                getattr(caller.f_globals.get("__spec__"), "name", "").startswith("torch"):
            return real(*args, **kwargs)
        raise ReferenceUnavailable(_guard_message(dotted))
    gate.__name__ = gate.__qualname__ = dotted.rpartition(".")[2]
    return gate


def _mode_stack():
    """Push and pop for the runner's own function mode, kept out of the student's reach."""
    push, pop = torch._C._push_on_torch_function_stack, torch._C._pop_torch_function_stack
    length, at = torch._C._len_torch_function_stack, torch._C._get_function_stack_at

    def enter(mode):
        push(mode)

    def leave(mode):
        n = length()
        if n and at(n - 1) is mode:              # only the mode itself, and only on top
            pop()
    return enter, leave


_ENTER, _LEAVE = _mode_stack()


def block_guard_breakers() -> list[str]:
    """Replace the guard breakers (BLOCKED, GATED) where they exist; returns their names."""
    done = []
    for table, make in ((BLOCKED, lambda real, d: _Blocked(d, _guard_message(d))),
                        (GATED, _gate)):
        for home, names in table.items():
            try:
                owner = _owner(home)
            except (ImportError, AttributeError):
                continue
            for name in names:
                real = getattr(owner, name, None)
                if real is None or isinstance(real, _Blocked):
                    continue
                try:
                    setattr(owner, name, make(real, f"{home}.{name}"))
                    done.append(f"{home}.{name}")
                except (AttributeError, TypeError):
                    pass
    leave = TorchFunctionMode.__exit__
    if not getattr(leave, "_guarded", False):
        def __exit__(self, *exc):
            """A mode leaves the stack only from its top: no popping someone else's mode."""
            n = _len()
            if n and _at(n - 1) is self:
                return leave(self, *exc)
        __exit__._guarded = True
        TorchFunctionMode.__exit__ = __exit__
        done.append("torch.overrides.TorchFunctionMode.__exit__")
    return done


_len, _at = torch._C._len_torch_function_stack, torch._C._get_function_stack_at


class _Refuse(TorchFunctionMode):
    """Refuses the forbidden torch functions under any name they are called by."""

    def __init__(self, leaves: dict[str, str]):
        super().__init__()
        self.leaves = leaves
        self.patterns = [_fold(k[1:]) for k in leaves if k.startswith("*")]
        # where autograd is forbidden ("derive the gradient"), so are complex numbers: the
        # complex step (f(x + ih).imag / h) is a derivative computed for you
        self.no_complex = any(str(v).startswith(("torch.autograd", "torch.func"))
                              for v in leaves.values())

    def __enter__(self):
        _ENTER(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        _LEAVE(self)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = str(getattr(func, "__name__", "")).split(".")[0]
        if name in self.leaves:
            raise ReferenceUnavailable(_message(self.leaves[name]))
        if any(p in _fold(name) for p in self.patterns):
            raise ReferenceUnavailable(_message(f"torch's {name}"))
        if not self.no_complex:
            return func(*args, **(kwargs or {}))
        if _complex((args, kwargs)):
            raise ReferenceUnavailable(COMPLEX)
        out = func(*args, **(kwargs or {}))
        if _complex(out):
            raise ReferenceUnavailable(COMPLEX)
        return out


COMPLEX = ("complex numbers are not available when grading a task that asks you to derive a "
           "gradient (the complex step computes it for you): use real tensors")


def _complex(tree) -> bool:
    """Whether ``tree`` (an op's arguments or its output) holds anything complex."""
    from torch.utils._pytree import tree_leaves
    for x in tree_leaves(tree):
        if isinstance(x, torch.Tensor):
            if x.is_complex():
                return True
        elif isinstance(x, complex) or isinstance(x, torch.dtype) and x.is_complex:
            return True
    return False


def _fold(name: str) -> str:
    """A name as patterns compare it: case and underscores ignored."""
    return name.lower().replace("_", "")


# The namespaces where a forbidden name's namesakes are replaced too (and patterns looked for).
NAMESPACES = ("torch", "torch._C", "torch._C._nn", "torch.nn.functional", "torch.ops.aten",
              "torch.ao.nn.quantizable", "torch.ao.nn.quantizable.modules",
              "torch.ao.nn.quantizable.modules.activation", "torch.ao.nn.quantized",
              "torch.ao.nn.quantized.modules", "torch.ao.nn.quantized.modules.activation",
              "torch.nn.quantizable", "torch.nn.quantizable.modules",
              "torch.nn.quantizable.modules.activation", "torch.nn.quantized",
              "torch.nn.quantized.modules", "torch.nn.quantized.modules.activation")


def _namespaces() -> list:
    out = []
    for path in NAMESPACES:
        try:
            out.append(_owner(path))
        except (ImportError, AttributeError):
            pass
    return out


def _owner(path: str):
    """The object at dotted ``path`` (a module, or an attribute of one)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


def forbid(names) -> dict[str, str]:
    """Replace each dotted name (and its namesakes in torch's namespaces) by a blocker."""
    names = list(names)
    aliases = _namespaces() if names else []
    leaves = {}
    for dotted in names:
        if str(dotted).startswith("*"):                 # a pattern: every name that contains it
            leaves[dotted] = dotted
            for owner in aliases:
                for leaf in dir(owner):
                    if _fold(dotted[1:]) in _fold(leaf) and \
                            not isinstance(getattr(owner, leaf, None), _Blocked):
                        try:
                            setattr(owner, leaf, _Blocked(f"torch's {leaf}"))
                        except (AttributeError, TypeError):
                            pass
            continue
        home, _, leaf = str(dotted).rpartition(".")
        leaves.setdefault(leaf, dotted)                 # the first, most public, name is told
        owners = []
        try:
            owners.append(_owner(home))
        except (ImportError, AttributeError):
            pass
        for owner in owners + aliases:
            try:
                if hasattr(owner, leaf) and not isinstance(getattr(owner, leaf), _Blocked):
                    setattr(owner, leaf, _Blocked(leaves[leaf]))
            except (AttributeError, TypeError, ReferenceUnavailable):
                pass                                   # read-only: the function mode refuses it
    return leaves


def read():
    header = IN.read(4)
    if len(header) < 4:
        return None
    n = _wire.unpack_length(header)
    data = b""
    while len(data) < n:
        chunk = IN.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def write(obj) -> None:
    OUT.write(_wire.pack(json.dumps(obj, allow_nan=False).encode()))


def _missing(e: ModuleNotFoundError) -> str:
    return (f"your function needs the module {e.name!r}, which is not available when grading "
            "(build tasks run with torch, numpy and Python's standard library only; attnlab "
            "itself is left out)")


def raised(e: BaseException) -> dict:
    return {"raised": type(e).__name__[:100], "message": str(e)[:300]}


def main() -> int:
    global IN, OUT, _wire
    OUT = os.fdopen(os.dup(1), "wb", buffering=0)      # frames; print() goes to stderr instead
    os.dup2(2, 1)
    IN = os.fdopen(os.dup(0), "rb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.path.insert(0, sys.argv[1])    # the folder of attnlab/exercises/_wire.py: in the
    _wire = importlib.import_module("_wire")    # sandbox that file alone is there
    sys.path[1:1] = sys.argv[2:]       # the folder of attnlab, when the exercise allows a module
    load = read()
    if not isinstance(load, dict) or load.get("op") != "load":
        return 2
    data = load.get("function") or {}
    leaves = forbid(load.get("forbid", []))
    if leaves:
        block_guard_breakers()                  # before the function is unpickled
    fn, error = None, None
    if not data.get("__function__"):
        error = "your function could not be pickled in the notebook: " + str(data.get("error"))
    else:
        try:
            import cloudpickle
            started = time.monotonic()
            with _Refuse(leaves):
                fn = cloudpickle.loads(base64.b64decode(data["__function__"]))
        except ModuleNotFoundError as e:
            error = _missing(e)
        except BaseException as e:  # noqa: BLE001 - anything the pickle does: reported
            error = f"your function could not be loaded: {type(e).__name__}: {e}"
    write({"ok": True, "load_seconds": time.monotonic() - started} if error is None
          else {"error": error[:500]})
    while (call := read()) is not None:
        if error is not None:
            write({"raised": "NotGradable", "message": error[:500]})
            continue
        try:
            args = _wire.decode(call["args"])
            kwargs = _wire.decode(call["kwargs"])
        except Exception as e:  # noqa: BLE001 - the grader's own data: should not happen
            write(raised(e))
            continue
        try:
            with _Refuse(leaves):
                result = fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            write({"raised": "NotGradable", "message": _missing(e)})
            continue
        except BaseException as e:  # noqa: BLE001 - the student's code: reported, not fatal
            write(raised(e))
            continue
        try:
            write({"result": _wire.encode(result)})
        except Exception as e:  # noqa: BLE001 - an output the wire cannot carry
            write({"raised": "NotGradable", "message": f"the output could not be sent: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
