r"""What every checker shares: feedback, answer parsing, the build-task harness, the grade log.

A checker is registered under the label of its exercise with :func:`checker`. The decorator

* runs it with the random number generator forked and seeded, so it gives the same verdict in the
  student's notebook and in the grader, and leaves the notebook's random stream alone;
* answers "not done yet" when an answer is still ``...`` or a function still raises
  :class:`NotImplementedError` (the stubs of the student edition);
* when ``$ATTNLAB_GRADE_LOG`` names a file, appends a JSON line with the exercise, the verdict and
  the *answer*: numbers and tensors as they are, a function as the list of what it returned to the
  checker. The grader (``tools/grade.py``) re-runs the checker on that answer with
  :func:`regrade`, in its own process, and reports that verdict, not the one the notebook printed.
"""
from __future__ import annotations

import builtins
import functools
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping

import torch

REGISTRY: dict[str, Callable] = {}
_MAX_LOG = 4_000_000  # characters of one logged answer


class Feedback(str):
    """A message for the learner; ``.ok`` tells whether it passed, ``.done`` whether it was tried."""

    ok: bool
    done: bool

    def __new__(cls, ok: bool, message: str, done: bool = True):
        prefix = "Correct! " if ok else ("Not yet. " if done else "Not done yet. ")
        obj = super().__new__(cls, prefix + message)
        obj.ok, obj.done = bool(ok), bool(done)
        return obj

    def __bool__(self) -> bool:
        return self.ok


def not_done(message: str) -> Feedback:
    return Feedback(False, message, done=False)


# --- answers -------------------------------------------------------------------------------

def as_tensor(x, name: str) -> torch.Tensor | Feedback:
    try:
        return torch.as_tensor(x, dtype=torch.float64).detach()
    except (TypeError, ValueError, RuntimeError):
        return Feedback(False, f"{name} should be a tensor or a list of numbers, "
                               f"got {type(x).__name__}.")


def as_number(x, name: str) -> float | Feedback:
    """``x`` as a float (int, float, Fraction, numpy or one-element tensor), else a Feedback."""
    if isinstance(x, bool) or isinstance(x, (str, bytes)):
        return Feedback(False, f"{name} should be a number, got {type(x).__name__} {x!r}.")
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            return Feedback(False, f"{name} should be a single number, got a tensor of shape "
                                   f"{tuple(x.shape)}.")
        return float(x.item())
    if isinstance(x, numbers.Real):
        return float(x)
    try:                                                    # numpy scalars and 0-d arrays
        if getattr(x, "shape", None) == () or getattr(x, "size", None) == 1:
            return float(x)
    except (TypeError, ValueError):
        pass
    return Feedback(False, f"{name} should be a number, got {type(x).__name__}.")


def as_counts(x, name: str, keys, key_name: str) -> dict | Feedback:
    """A dict ``{key: count}`` covering ``keys``, with number values; else a Feedback."""
    if not isinstance(x, Mapping):
        return Feedback(False, f"{name} should be a dict {{{key_name}: count}}, "
                               f"got {type(x).__name__}.")
    missing = [k for k in keys if k not in x]
    if missing:
        return Feedback(False, f"{name} needs a count for {key_name} = "
                               f"{', '.join(map(str, missing))} (got keys {sorted(x, key=str)}).")
    out = {}
    for k in keys:
        v = as_number(x[k], f"{name}[{k}]")
        if isinstance(v, Feedback):
            return v
        out[k] = v
    return out


def diagnose(got: float, expected: float, wrong: list[tuple[float, str]],
             rel: float = 1e-9) -> str | None:
    """``None`` when ``got`` matches ``expected``; else the hint of a known mistake (or "")."""
    def same(a, b):
        return math.isclose(a, b, rel_tol=rel, abs_tol=rel)
    if same(got, expected):
        return None
    for value, hint in wrong:
        if same(got, value):
            return hint[:1].upper() + hint[1:]
    return ""


def fmt(v: float) -> str:
    return f"{int(round(v)):,}" if float(v).is_integer() else f"{v:.4g}"


def check_number(answer, expected: float, *, name: str, wrong=(), rel: float = 1e-6,
                 why: str = "", hint: str = "") -> Feedback:
    """The common numeric checker: right within ``rel``, a known mistake's hint, or a hint."""
    got = as_number(answer, name)
    if isinstance(got, Feedback):
        return got
    found = diagnose(got, expected, list(wrong), rel=rel)
    if found is None:
        return Feedback(True, f"{name} = {fmt(expected)}. {why}".strip())
    return Feedback(False, f"{name}: expected a different value than {fmt(got)}. "
                    + (found or hint))


def formula_values(answer, points, names) -> dict | Feedback:
    """``{point: answer(*point)}`` as floats for a learner's formula, or a Feedback naming the
    point where it raised or returned something that is not a number."""
    got = {}
    for point in points:
        args = ", ".join(f"{n}={v}" for n, v in zip(names, point))
        try:
            v = answer(*point)
        except Exception as e:  # noqa: BLE001 - the learner's code: report it
            return Feedback(False, f"your formula raised {type(e).__name__}: {e} for {args}. It "
                                   f"should take ({', '.join(names)}) and return a number.")
        if v is ...:
            return not_done(f"Your formula still returns `...` for {args}: fill it in.")
        v = as_number(v, f"f({args})")
        if isinstance(v, Feedback):
            return v
        got[point] = v
    return got


def formula_or_counts(answer, points, names, keys, fixed) -> dict | Feedback:
    """A count asked for as a formula or a table: ``{point: value}``, from a formula
    ``f(*point)`` evaluated at ``points`` or from a dict ``{key: count}`` for the points
    ``(fixed, key)``; else a Feedback."""
    if callable(answer):
        return formula_values(answer, points, names)
    if isinstance(answer, Mapping):
        counts = as_counts(answer, "answer", keys, names[-1])
        return counts if isinstance(counts, Feedback) else {(fixed, k): counts[k] for k in keys}
    return Feedback(False, f"answer should be a formula f({', '.join(names)}) (a function) or a "
                           f"dict {{{names[-1]}: count}} for {names[0]} = {fixed}, got "
                           f"{type(answer).__name__}.")


# --- build tasks -----------------------------------------------------------------------------

def _where(diff: torch.Tensor) -> str:
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    return f" at index {index}" if diff.dim() else ""


def _flat(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


def check_build(fn, cases: Iterable, *, what: str, atol: float = 1e-6,
                mistakes: Iterable[tuple[Callable, str]] = (), names: tuple[str, ...] = ("output",),
                done: str = "", nonfinite_hint: str = "Does an exp overflow? A softmax subtracts "
                                                      "each row's maximum first.") -> Feedback:
    """Hold the learner's ``fn`` against reference outputs, case by case, and say what differs.

    ``cases`` yields ``(description, args, expected)``; ``expected`` is a tensor or a tuple of
    tensors named by ``names``. ``mistakes`` are ``(wrong_fn, hint)``: when the learner's output
    equals ``wrong_fn(*args)`` the hint says which mistake it is; ``nonfinite_hint`` follows a
    NaN or inf where the reference is finite. The first failing case is
    reported with the shape, the case and how far off it is.
    """
    if not callable(fn):
        return Feedback(False, f"pass your function itself, got {type(fn).__name__}.")
    n = 0
    for case, args, expected in cases:
        n += 1
        try:
            got = fn(*args)
        except NotImplementedError:
            return not_done("Your function still raises NotImplementedError: fill in the stub.")
        except Exception as e:  # noqa: BLE001 - the learner's code: report it, do not crash
            return Feedback(False, f"your function raised {type(e).__name__}: {e} ({case}).")
        if got is None:
            return not_done("Your function returned None: return the result.")
        want, have = _flat(expected), _flat(got)
        if len(have) != len(want):
            return Feedback(False, f"expected {len(want)} result(s) ({', '.join(names)}), got "
                                   f"{len(have)} ({case}).")
        for name, w, h in zip(names, want, have):
            if not isinstance(h, torch.Tensor):
                return Feedback(False, f"{name} should be a tensor, got {type(h).__name__} "
                                       f"({case}).")
            if tuple(h.shape) != tuple(w.shape):
                return Feedback(False, f"{name}: expected shape {tuple(w.shape)}, got "
                                       f"{tuple(h.shape)} ({case}).")
            dtype = h.dtype
            h = h.detach().to(w.dtype)
            if not torch.isfinite(h[torch.isfinite(w)]).all():
                return Feedback(False, f"{name} has NaN or inf where the reference is finite "
                                       f"({case}). {nonfinite_hint}".rstrip())
            diff = (h - w).abs().nan_to_num(0.0)
            if diff.numel() and diff.max().item() > atol:
                hint = _match_mistake(got, args, mistakes, atol)
                if not hint and dtype != w.dtype and diff.max().item() <= 0.05 * (
                        1 + w.abs().max().item()):
                    hint = (f"Your {name} is {str(dtype)[6:]} but the inputs are "
                            f"{str(w.dtype)[6:]}: keep their dtype (the difference is rounding).")
                return Feedback(False, f"{name} is off by up to {diff.max().item():.3g}"
                                       f"{_where(diff)} (tolerance {atol:g}; {case}). "
                                       + (hint or ""))
    return Feedback(True, f"your function matches {what} on all {n} cases. {done}".strip())


def _match_mistake(got, args, mistakes, atol) -> str | None:
    for wrong, hint in mistakes:
        try:
            w = _flat(wrong(*args))
            if all(tuple(a.shape) == tuple(b.shape) and
                   torch.allclose(a.detach().to(b.dtype), b, atol=atol, equal_nan=True)
                   for a, b in zip(_flat(got), w)):
                return hint
        except Exception:  # noqa: BLE001 - a mistake model that does not apply
            continue
    return None


# --- the grade log ---------------------------------------------------------------------------

class _Recorder:
    """Wraps the learner's function: passes calls through and remembers what came back."""

    def __init__(self, fn):
        self.fn, self.calls, self.not_implemented = fn, [], False
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        try:
            result = self.fn(*args, **kwargs)
        except Exception as e:
            self.not_implemented |= isinstance(e, NotImplementedError)
            self.calls.append({"raised": type(e).__name__, "message": str(e)[:300]})
            raise
        self.calls.append({"result": encode(result)})
        return result


class _Replay:
    """Stands for the learner's function in :func:`regrade`: gives back what it recorded."""

    def __init__(self, calls):
        self.calls, self.not_implemented = list(calls), False

    def __call__(self, *args, **kwargs):
        if not self.calls:
            raise RuntimeError("the function was called more often than in the notebook")
        call = self.calls.pop(0)
        if "raised" in call:
            kind = getattr(builtins, call["raised"], None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = type(call["raised"], (RuntimeError,), {})  # same name, as reported
            self.not_implemented |= kind is NotImplementedError
            raise kind(call["message"])
        return decode(call["result"])


def encode(x):
    """A JSON-able form of an answer (numbers, strings, tensors, containers, recorded calls)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if x is Ellipsis:
        return {"__ellipsis__": True}
    if isinstance(x, _Recorder):
        return {"__calls__": x.calls}
    if isinstance(x, torch.Tensor):
        return {"__tensor__": x.detach().cpu().tolist(), "dtype": str(x.dtype).split(".")[-1]}
    if isinstance(x, numbers.Real):
        return float(x)
    if hasattr(x, "__array__") and not callable(x):                    # numpy stays numpy
        return {"__ndarray__": encode(torch.as_tensor(x))}
    if isinstance(x, tuple):
        return {"__tuple__": [encode(v) for v in x]}
    if isinstance(x, list):
        return [encode(v) for v in x]
    if isinstance(x, Mapping):
        return {"__dict__": [[encode(k), encode(v)] for k, v in x.items()]}
    return {"__object__": type(x).__name__}


class _Opaque:
    """An answer the log could not keep (an object of another kind)."""


def decode(x):
    if isinstance(x, list):
        return [decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    if "__ndarray__" in x:
        return decode(x["__ndarray__"]).numpy()
    if "__tensor__" in x:
        return torch.tensor(x["__tensor__"], dtype=getattr(torch, x["dtype"]))
    if "__tuple__" in x:
        return tuple(decode(v) for v in x["__tuple__"])
    if "__dict__" in x:
        return {decode(k): decode(v) for k, v in x["__dict__"]}
    if "__calls__" in x:
        return _Replay(x["__calls__"])
    if "__ellipsis__" in x:
        return ...
    return type(x.get("__object__", "object"), (_Opaque,), {})()


def _run(check, args, kwargs) -> Feedback:
    if any(a is ... for a in (*args, *kwargs.values())):
        return not_done("Replace the `...` with your answer.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        feedback = check(*args, **kwargs)
    if not feedback.ok and any(getattr(a, "not_implemented", False)
                               for a in (*args, *kwargs.values())):
        return not_done("Your function still raises NotImplementedError: fill in the stub.")
    return feedback


def checker(label: str):
    """Register a checker for exercise ``label`` and make it log (see the module docstring)."""
    def register(check):
        @functools.wraps(check)
        def wrapper(*args, **kwargs):
            args = tuple(_Recorder(a) if _is_function(a) else a for a in args)
            kwargs = {k: _Recorder(v) if _is_function(v) else v for k, v in kwargs.items()}
            feedback = _run(check, args, kwargs)
            log = os.environ.get("ATTNLAB_GRADE_LOG")
            if log:
                answer = json.dumps({"args": [encode(a) for a in args],
                                     "kwargs": {k: encode(v) for k, v in kwargs.items()}})
                record = {"exercise": label, "checker": check.__name__, "ok": feedback.ok,
                          "done": feedback.done, "message": str(feedback),
                          "answer": answer if len(answer) <= _MAX_LOG else None}
                with open(log, "a") as f:
                    f.write(json.dumps(record) + "\n")
            return feedback
        wrapper.label, wrapper.check = label, check
        REGISTRY[label] = wrapper
        return wrapper
    return register


def _is_function(x) -> bool:
    return callable(x) and not isinstance(x, (type, torch.Tensor, _Replay))


def regrade(record: Mapping) -> Feedback:
    """The verdict of the checker of ``record["exercise"]`` on the answer the record kept."""
    wrapper = REGISTRY.get(record.get("exercise"))
    if wrapper is None:
        return Feedback(False, f"no checker is registered for {record.get('exercise')!r}.")
    if not record.get("answer"):
        return Feedback(False, "the answer was too large to keep, so it could not be re-checked.")
    answer = json.loads(record["answer"])
    args = [decode(a) for a in answer["args"]]
    kwargs = {k: decode(v) for k, v in answer["kwargs"].items()}
    feedback = _run(wrapper.check, args, kwargs)
    replays = [a for a in (*args, *kwargs.values()) if isinstance(a, _Replay)]
    if any(r.calls for r in replays):
        return Feedback(False, "the function was called fewer times than in the notebook, so "
                               "its recorded answers do not fit this checker.")
    return feedback
