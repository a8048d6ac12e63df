"""The grader's checking process, the sandboxes of students' functions, and the relay between.

The checking process (tools/grade_check.py) runs only the library's checkers; it lives as long as
the grading run and is replaced after any failure. Each function a student hands in runs in a
sandbox of its own (tools/grade_runner.py): torch, numpy and the standard library, no attnlab
(but the modules its exercise allows), its reference made unavailable. The two never meet: every
call goes through this process, which gives each a deadline and a size limit and forwards the
function's answer without reading it.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attnlab
from grade_sandbox import (FrameError, Limits, Sandbox, clean_env, python_paths, recv,
                           runner_paths, send, spawn, stop)

TOOLS = Path(__file__).resolve().parent
WIRE = TOOLS.parent / "attnlab" / "exercises" / "_wire.py"
PACKAGE = Path(attnlab.__file__).resolve().parent
MAX_MESSAGE = 64 * 2**20             # bytes of one message of the checking process
MAX_REPLY = 32 * 2**20               # bytes of one answer of a student's function


def attnlab_files(modules) -> list[Path]:
    """The files of attnlab that the modules an exercise allows (its ``allow``) need: each
    module, the package's ``__init__`` and what they import, read off their import lines. Every
    other part of attnlab is absent from the sandbox of a submitted function."""
    todo, seen = ["attnlab", *modules], set()
    while todo:
        name = todo.pop()
        if name in seen or not re.fullmatch(r"attnlab(\.\w+)*", name):
            continue
        seen.add(name)
        path = PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py") if "." in name \
            else PACKAGE / "__init__.py"
        if not path.is_file():
            continue
        text = path.read_text()
        todo += re.findall(r"^\s*(?:from|import) (attnlab\.\w+)", text, re.M)
        for names in re.findall(r"^\s*from attnlab import ([\w ,()]+)", text, re.M):
            todo += [f"attnlab.{n}" for n in re.findall(r"\w+", names)
                     if (PACKAGE / f"{n}.py").is_file()]
    return sorted(p for p in (PACKAGE.joinpath(*n.split(".")[1:]).with_suffix(".py") if "." in n
                              else PACKAGE / "__init__.py" for n in seen) if p.is_file())


class CheckFailed(Exception):
    """The checking process failed or ran out of time on one notebook."""


class Checker:
    """The checking process (grade_check.py, long-lived, restarted after any failure) and the
    sandboxes of students' functions (grade_runner.py, one per function), whose calls this
    process relays: each call, load and answer has a deadline and a size limit."""

    def __init__(self, sandbox: Sandbox, limits: Limits, function_timeout: float):
        self.sandbox, self.limits, self.function_timeout = sandbox, limits, function_timeout
        self.proc, self.work, self.served = None, None, 0

    def _start(self) -> None:
        self.close()
        self.work = Path(tempfile.mkdtemp(prefix="grade-check-"))
        env = clean_env(self.sandbox.home(self.work))
        cmd = self.sandbox.command([sys.executable, "-s", str(TOOLS / "grade_check.py")],
                                   self.work,
                                   ro=[*python_paths(), PACKAGE, TOOLS / "grade_check.py"],
                                   env=env, limits=self.limits)
        with open(self.work / "stderr", "wb") as err:
            self.proc = spawn(cmd, limits=self.limits, cpu_seconds=10**7, cwd=self.work, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)

    def verdicts(self, labels, log: bytes, truncated: bool, seed: int, deadline: float) -> dict:
        self.served += 1
        if self.proc is None or self.proc.poll() is not None or self.served % 100 == 0:
            self._start()                                  # a fresh one now and then
        request = {"op": "grade", "labels": labels, "truncated": truncated, "seed": seed,
                   "log": base64.b64encode(log).decode("ascii")}
        runners: dict[int, Runner] = {}
        try:
            send(self.proc.stdin.fileno(), json.dumps(request).encode(), deadline)
            while True:
                payload = recv(self.proc.stdout.fileno(), deadline, MAX_MESSAGE)
                if payload is None:
                    raise CheckFailed("the checking process stopped")
                message = json.loads(payload)
                if message.get("op") == "verdicts":
                    return message
                reply = self._call(runners, message, deadline)
                send(self.proc.stdin.fileno(), reply, deadline)
        except (FrameError, ValueError, KeyError, TypeError, AttributeError) as e:
            self.close()                                         # a fresh one next time
            raise CheckFailed(f"{type(e).__name__}: {e}") from None
        finally:
            for runner in runners.values():
                runner.stop()

    def _call(self, runners: dict, message: dict, deadline: float) -> bytes:
        key = int(message["id"])
        runner = runners.get(key)
        if runner is None:
            if "function" not in message:
                return _raised("NotGradable", "the function's sandbox was already closed")
            for other in runners.values():                        # one sandbox at a time
                other.stop()
            runner = runners[key] = Runner(self, message["function"], message.get("forbid", []),
                                           min(deadline, time.monotonic() + 90),
                                           message.get("allow", []))
        return runner.call(message["args"], message["kwargs"])

    def close(self) -> None:
        stop(self.proc)
        self.proc = None
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


def _raised(kind: str, message: str) -> bytes:
    return json.dumps({"raised": kind, "message": message}).encode()


class Runner:
    """One student's function in its own sandbox (tools/grade_runner.py)."""

    def __init__(self, checker: Checker, function, forbid, deadline: float, allow=()):
        self.function_timeout = self.budget = checker.function_timeout
        self.error, self.kind = None, "NotGradable"
        self.work = Path(tempfile.mkdtemp(prefix="grade-fn-"))
        sandbox = checker.sandbox
        env = clean_env(sandbox.home(self.work))
        modules = attnlab_files([str(m) for m in allow]) if allow else []
        cmd = sandbox.command([sys.executable, "-s", "-B", str(TOOLS / "grade_runner.py"),
                               str(WIRE.parent)] + ([str(PACKAGE.parent)] if modules else []),
                              self.work, ro=[*runner_paths(), TOOLS / "grade_runner.py", WIRE,
                                             *modules],
                              env=env, limits=checker.limits)
        self.proc = spawn(cmd, limits=checker.limits,
                          cpu_seconds=checker.function_timeout * 4 + 120,
                          cwd=self.work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        start = time.monotonic()
        try:
            send(self.proc.stdin.fileno(), json.dumps(
                {"op": "load", "function": function, "forbid": forbid}).encode(), deadline)
            reply = recv(self.proc.stdout.fileno(), deadline, 1 << 20)
            answer = json.loads(reply) if reply else {}
            if not isinstance(answer, dict) or not answer.get("ok"):
                error = answer.get("error") if isinstance(answer, dict) else None
                self.fail(str(error) if error else "your function's sandbox stopped while "
                                                   "loading it")
            else:          # unpickling the function (not the sandbox's start) counts against
                loading = answer.get("load_seconds")            # its budget
                loading = float(loading) if isinstance(loading, (int, float)) else 0.0
                self.budget -= min(max(loading, 0.0), time.monotonic() - start)
                if self.budget <= 0:
                    self.fail(f"your function did not return within "
                              f"{self.function_timeout:.0f} s (loading it and all its calls "
                              f"together)", "TimeoutError")
        except (FrameError, ValueError) as e:
            self.fail(f"your function could not be loaded in time ({e})")

    def fail(self, error: str, kind: str = "NotGradable") -> None:
        self.error, self.kind = error[:500], kind
        self.stop()

    def call(self, args, kwargs) -> bytes:
        if self.error:
            return _raised(self.kind, self.error)
        start = time.monotonic()
        deadline = start + max(0.0, self.budget)
        try:
            send(self.proc.stdin.fileno(), json.dumps({"op": "call", "args": args,
                                                       "kwargs": kwargs}).encode(), deadline)
            reply = recv(self.proc.stdout.fileno(), deadline, MAX_REPLY)
        except FrameError as e:
            if time.monotonic() >= deadline:
                self.fail(f"your function did not return within {self.function_timeout:.0f} s "
                          f"(all its calls together)", "TimeoutError")
            else:
                self.fail(f"your function's answer could not be read ({e})")
            return _raised(self.kind, self.error)
        if reply is None:
            self.fail("your function's process stopped (did it exit, or run out of memory?)")
            return _raised(self.kind, self.error)
        self.budget -= time.monotonic() - start
        return reply

    def stop(self) -> None:
        stop(getattr(self, "proc", None))
        shutil.rmtree(self.work, ignore_errors=True)
