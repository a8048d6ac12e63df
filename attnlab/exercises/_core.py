r"""What every checker shares: feedback, answer parsing, the build-task harness, grading.

A checker is registered under the label of its exercise with :func:`checker`. The decorator

* runs it with the random number generator forked and seeded, so it gives the same verdict every
  time in the learner's notebook, and leaves the notebook's random stream alone;
* answers "not done yet" when an answer is still ``...`` or a function still raises
  :class:`NotImplementedError` (the stubs of the student edition);
* knows which of the checker's parameters are the *answer* (the others, such as a tolerance or a
  size, are settings that grading ignores).

**Grading.** In a notebook that the grader runs (``$ATTNLAB_GRADING`` is ``1``) a checker checks
nothing: it appends the answer to the grade log (``$ATTNLAB_GRADE_LOG``) and prints that it was
recorded. Numbers, tensors and dicts are kept as they are (:mod:`._wire`), a function is pickled
with cloudpickle. The grader (``tools/grade.py``) then calls :func:`regrade` in a separate,
sandboxed checking process, under a secret seed of its own: build tasks get fresh inputs,
settings are dropped, the student's function runs in yet another sandbox (without attnlab, and
with the reference it is held against made unavailable, see ``forbid``), and a failed answer's
message withholds the expected value. Outside grading the log, if set, gets the same records
(with the verdict), which is how the tests compare the two paths.
"""
from __future__ import annotations

import base64
import builtins
import contextlib
import functools
import inspect
import json
import math
import numbers
import os
import random
from collections.abc import Callable, Iterable, Mapping

import torch

from . import _wire

REGISTRY: dict[str, Callable] = {}
MAX_RECORD = 4 * 2**20  # characters of one line of the grade log
_GRADING: dict = {"seed": None}


class Feedback(str):
    """A message for the learner; ``.ok`` tells whether it passed, ``.done`` whether it was tried."""

    ok: bool
    done: bool
    safe: bool = False      # the message holds no expected value (build tasks): kept when grading

    def __new__(cls, ok: bool, message: str, done: bool = True, prefix: str | None = None):
        if prefix is None:
            prefix = "Correct! " if ok else ("Not yet. " if done else "Not done yet. ")
        obj = super().__new__(cls, prefix + message)
        obj.ok, obj.done = bool(ok), bool(done)
        return obj

    def __bool__(self) -> bool:
        return self.ok


def not_done(message: str) -> Feedback:
    return Feedback(False, message, done=False)


def safe(feedback: Feedback) -> Feedback:
    """Mark ``feedback`` as holding no expected value (so grading keeps its message)."""
    feedback.safe = True
    return feedback


# --- seeds ------------------------------------------------------------------------------------

def case_seed(default: int) -> int:
    """``default`` in a learner's notebook; under :func:`grading` a seed drawn from the grader's
    secret seed, so that a build task meets inputs nobody saw before."""
    seed = _GRADING["seed"]
    return default if seed is None else random.Random(f"{seed}/{default}").getrandbits(62)


def generator(default: int) -> torch.Generator:
    """A generator seeded with :func:`case_seed` ``(default)``: the checkers' random cases."""
    return torch.Generator().manual_seed(case_seed(default))


def fresh_points(points, make: Callable, n: int = 4) -> list:
    """A formula's checking points: ``points``, and under :func:`grading` ``n`` more drawn with
    ``make(rng)`` (``rng`` a :class:`random.Random` of the grader's seed), so that a formula
    that only looks up the usual points fails."""
    seed = _GRADING["seed"]
    if seed is None:
        return list(points)
    rng = random.Random(f"{seed}/points")
    return list(points) + [make(rng) for _ in range(n)]


@contextlib.contextmanager
def grading(seed: int):
    """Check as the grader does: fresh cases from ``seed``, expected values withheld."""
    old = _GRADING["seed"]
    _GRADING["seed"] = int(seed)
    try:
        yield
    finally:
        _GRADING["seed"] = old


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
    return safe(_check_build(fn, cases, what=what, atol=atol, mistakes=mistakes, names=names,
                             done=done, nonfinite_hint=nonfinite_hint))


def _check_build(fn, cases, *, what, atol, mistakes, names, done, nonfinite_hint) -> Feedback:
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


# --- answers, records and grading ------------------------------------------------------------

class _Watch:
    """Wraps the learner's function in their notebook: notes a NotImplementedError (a stub)."""

    def __init__(self, fn):
        self.fn, self.not_implemented = fn, False
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        try:
            return self.fn(*args, **kwargs)
        except NotImplementedError:
            self.not_implemented = True
            raise


def _is_function(x) -> bool:
    return callable(x) and not isinstance(x, (type, torch.Tensor, StandIn))


def grading_mode() -> bool:
    """Whether this notebook is being run by the grader (checkers record, do not check)."""
    return os.environ.get("ATTNLAB_GRADING") == "1"


def _run(check, args, kwargs) -> Feedback:
    if any(a is ... for a in (*args, *kwargs.values())):
        return not_done("Replace the `...` with your answer.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case_seed(0))
        feedback = check(*args, **kwargs)
    if not feedback.ok and any(getattr(a, "not_implemented", False)
                               for a in (*args, *kwargs.values())):
        return not_done("Your function still raises NotImplementedError: fill in the stub.")
    return feedback


def _pickled(fn) -> dict:
    """A function as wire data: its cloudpickle (the code and what it uses), or why not."""
    fn = getattr(fn, "fn", fn) if isinstance(fn, _Watch) else fn
    name = str(getattr(fn, "__name__", type(fn).__name__))[:100]
    try:
        import cloudpickle
        data = cloudpickle.dumps(fn, protocol=4)
    except Exception as e:  # noqa: BLE001 - an unpicklable closure: the grader says so
        return {"__function__": None, "name": name, "error": f"{type(e).__name__}: {e}"[:300]}
    return {"__function__": base64.b64encode(data).decode("ascii"), "name": name}


def _append(label: str, answers: Mapping, **extra) -> None:
    """Append one record (the exercise and the answer) to the grade log, if there is one."""
    log = os.environ.get("ATTNLAB_GRADE_LOG")
    if not log:
        return
    try:
        record = {"exercise": label,
                  "answer": {n: _wire.encode(v, _pickled) for n, v in answers.items()}, **extra}
        line = json.dumps(record, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as e:
        line = json.dumps({"exercise": label, "unreadable": f"{type(e).__name__}: {e}"[:300]})
    if len(line) > MAX_RECORD:
        line = json.dumps({"exercise": label, "too_large": len(line)})
    with open(log, "a") as f:
        f.write(line + "\n")


def checker(label: str, *, answers: tuple[str, ...] | None = None, forbid: tuple[str, ...] = (),
            allow: tuple[str, ...] = ()):
    """Register a checker for exercise ``label`` (see the module docstring).

    ``answers`` names the parameters that hold the learner's answer; by default those without a
    default and the positional ones that default to None. Every other parameter is a setting,
    ignored when grading. ``forbid`` lists the functions (dotted names) a submitted function may
    not call when grading: the reference it is held against (see ``tools/grade_runner.py``).
    ``allow`` names the modules of attnlab a submitted function may use when grading (none,
    unless the exercise asks to build on one).
    """
    def register(check):
        sig = inspect.signature(check)
        names = tuple(answers) if answers else tuple(
            p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and (p.default is p.empty or p.default is None))

        @functools.wraps(check)
        def wrapper(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)          # a wrong call raises TypeError, as usual
            given = {n: bound.arguments[n] for n in names if n in bound.arguments}
            if grading_mode():
                _append(label, given)
                return Feedback(False, "your answer is recorded; the grader checks it after the "
                                       "notebook has run.", prefix="Recorded: ")
            args = tuple(_Watch(a) if _is_function(a) else a for a in args)
            kwargs = {k: _Watch(v) if _is_function(v) else v for k, v in kwargs.items()}
            feedback = _run(check, args, kwargs)
            if os.environ.get("ATTNLAB_GRADE_LOG"):
                _append(label, given, ok=feedback.ok, done=feedback.done,
                        settings=sorted(set(bound.arguments) - set(names)))
            return feedback
        wrapper.label, wrapper.check, wrapper.answers = label, check, names
        wrapper.forbid, wrapper.allow = tuple(forbid), tuple(allow)
        REGISTRY[label] = wrapper
        return wrapper
    return register


# What a submitted function may not call when grading: the references the checkers hold it
# against (attnlab itself is not available to it at all). tools/grade_runner.py replaces each of
# these, and the same name in torch's other namespaces, by a function that raises.
AUTOGRAD = ("torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
            "torch.autograd.graph._engine_run_backward", "torch._C._ImperativeEngine",
            "torch.autograd.variable.Variable._execution_engine",
            "torch.autograd.functional.jacobian", "torch.autograd.functional.hessian",
            "torch.autograd.functional.vjp", "torch.autograd.functional.jvp",
            "torch.autograd.functional.hvp", "torch.autograd.functional.vhp",
            "torch.autograd.forward_ad.make_dual", "torch.autograd.forward_ad.dual_level",
            "torch._C._make_dual", "torch.func.grad", "torch.func.grad_and_value",
            "torch.func.vjp", "torch.func.jvp", "torch.func.jacrev", "torch.func.jacfwd",
            "torch.func.hessian", "torch.func.linearize")
# A name that starts with "*" is a pattern: every torch function whose name contains it.
ATTENTION = ("torch.nn.functional.scaled_dot_product_attention", "*attention",
             "torch.nn.attention.flex_attention.flex_attention", "torch.ops.aten._fused_sdp_choice",
             "torch._fused_sdp_choice")
# Patterns match with underscores and case ignored ("*multi_head" catches MultiheadAttention).
MULTI_HEAD = ("torch.nn.MultiheadAttention", "*multi_head",
              "torch.nn.modules.activation.MultiheadAttention",
              "torch.nn.modules.transformer.MultiheadAttention",
              "torch.nn.functional.multi_head_attention_forward",
              "torch.ao.nn.quantizable.MultiheadAttention",
              "torch.ao.nn.quantizable.modules.MultiheadAttention",
              "torch.ao.nn.quantizable.modules.activation.MultiheadAttention",
              "torch.ao.nn.quantized.MultiheadAttention",
              "torch.ao.nn.quantized.modules.MultiheadAttention",
              "torch.ao.nn.quantized.modules.activation.MultiheadAttention",
              "torch.nn.quantizable.MultiheadAttention",
              "torch.nn.quantizable.modules.activation.MultiheadAttention",
              "torch.nn.quantized.MultiheadAttention",
              "torch.nn.quantized.modules.activation.MultiheadAttention")


# Names a build function has no reason to use, and which switch off or go around the runner's
# guards (torch's function modes, reloading a module, frames, the garbage collector, code built
# at run time). A function whose code names one of them is not counted, even if it passes.
GUARD_BREAKERS = frozenset({
    "DisableTorchFunction", "DisableTorchFunctionSubclass", "_pop_mode", "_pop_mode_temporarily",
    "_pop_torch_function_stack", "_push_on_torch_function_stack", "_set_torch_function_mode",
    "_len_torch_function_stack", "_get_current_function_mode_stack", "TorchFunctionMode",
    "TorchDispatchMode", "_VariableFunctions", "_VariableFunctionsClass", "_execution_engine",
    "_ImperativeEngine", "_make_dual", "reload", "import_module", "__import__", "get_objects",
    "get_referents", "get_referrers", "__subclasses__", "_getframe", "f_back", "f_locals",
    "f_globals", "settrace", "setprofile", "exec", "eval", "compile", "b64decode",
    "decompress", "loads", "ctypes", "_Blocked", "_get_operation_overload",
    "_jit_get_operation", "_get_operation", "_dispatch_call"})


def code_names(data: Mapping) -> set[str]:
    """The names and strings in a pickled function's code (and the modules it uses), read with
    pickletools, that is without unpickling it."""
    import pickletools
    names = set()
    try:
        raw = base64.b64decode(str(data.get("__function__") or ""), validate=True)
        for _, arg, _ in pickletools.genops(raw):
            if isinstance(arg, str) and len(arg) < 200:
                names.add(arg)
                names.update(arg.replace(" ", ".").split("."))
    except Exception:  # noqa: BLE001 - a damaged pickle: the runner will say so
        pass
    return names


class NotGradable(Exception):
    """The grader could not run the learner's function (not picklable, needs attnlab, ...)."""


class StandIn:
    """The learner's function in the grader's checking process. Each call goes through
    ``call(data, args, kwargs)``, which runs the function in its own sandbox and answers
    ``{"result": wire}`` or ``{"raised": name, "message": str}``; this process never runs the
    learner's code."""

    def __init__(self, data: Mapping, call: Callable):
        self.data, self.call, self.not_implemented = data, call, False
        self.__name__ = str(data.get("name", "function"))[:100]

    def __call__(self, *args, **kwargs):
        reply = self.call(self.data, _wire.encode(list(args)), _wire.encode(kwargs))
        if not isinstance(reply, Mapping):
            raise NotGradable("the function's sandbox gave no answer")
        if "raised" in reply:
            name, message = str(reply.get("raised"))[:100], str(reply.get("message", ""))[:300]
            if not name.isidentifier():
                name = "Exception"
            kind = getattr(builtins, name, None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = type(name, (RuntimeError,), {})              # same name, as reported
            self.not_implemented |= kind is NotImplementedError
            raise kind(message)
        try:
            return _wire.decode(reply.get("result"))
        except (_wire.WireError, RecursionError, TypeError, ValueError) as e:
            raise NotGradable(f"your function returned something the grader cannot read "
                              f"({e})") from None


def describe(answers: Mapping) -> str:
    """A short account of an answer, for a message that withholds the expected value."""
    def one(v):
        if isinstance(v, (StandIn, _Watch)) or callable(v) and not isinstance(v, torch.Tensor):
            return "a function"
        if isinstance(v, torch.Tensor):
            return (f"{v.item():.6g}" if v.numel() == 1 and not v.is_complex()
                    else f"a tensor of shape {tuple(v.shape)}")
        if isinstance(v, bool) or v is None:
            return repr(v)
        if isinstance(v, numbers.Real):
            return f"{float(v):.6g}"
        if isinstance(v, Mapping):
            return f"a dict of {len(v)} entries"
        if isinstance(v, (list, tuple)):
            return f"a {type(v).__name__} of {len(v)} entries"
        return type(v).__name__ if not isinstance(v, str) else repr(v[:40])
    return ", ".join(f"{k} = {one(v)}" for k, v in answers.items())[:300]


def regrade(label: str, answers: Mapping, seed: int) -> Feedback:
    """The grader's verdict on the answer ``answers`` (parameter name -> decoded value, functions
    as :class:`StandIn`) to exercise ``label``, under the grader's ``seed``. Parameters that are
    not part of the answer are ignored; a failed answer's message withholds the expected value
    unless the checker marked it :func:`safe`."""
    wrapper = REGISTRY.get(label)
    if wrapper is None:
        return Feedback(False, f"no checker is registered for {label!r}.")
    kwargs = {n: v for n, v in answers.items() if n in wrapper.answers}
    params = inspect.signature(wrapper.check).parameters
    missing = [n for n in wrapper.answers
               if n not in kwargs and params[n].default is params[n].empty]
    if missing:
        return Feedback(False, f"the record holds no answer for {', '.join(missing)}.")
    with grading(seed):
        feedback = _run(wrapper.check, (), kwargs)
    breakers = sorted({name for v in kwargs.values() if isinstance(v, StandIn)
                       for name in code_names(v.data) & GUARD_BREAKERS})
    if feedback.ok and breakers:
        return Feedback(False, f"your function passes the checks, but its code uses "
                               f"{', '.join(breakers)}, which can switch off the grader's guards: "
                               "it is not counted (the instructor will read it).")
    if feedback.ok or not feedback.done or feedback.safe:
        return feedback
    return Feedback(False, f"the answer ({describe(kwargs)}) is not right. When grading, the "
                           "checker's hints and expected values are not shown: run the checker "
                           "in the notebook to see them.")
