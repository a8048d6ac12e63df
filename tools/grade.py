"""Grade a class: run each student's notebooks in a sandbox and check their answers yourself.

    python tools/grade.py SUBMISSIONS [--out grades] [--timeout 300] [--function-timeout 30]

``SUBMISSIONS`` holds one folder per student, each with that student's notebooks under the
book's file names (``02_self_attention.ipynb``). For every notebook, one after the other:

1. **Run** (tools/grade_execute.py) in a bubblewrap sandbox (tools/grade_sandbox.py): new user,
   mount, PID, network, IPC and UTS namespaces; only Python, its packages and attnlab visible,
   read-only; a home of its own on a small tmpfs; a clean environment; limits on memory, file
   size, processes and open files; the whole process tree killed at the time limit. In this run
   the checkers only *record* each answer in a grade log (``ATTNLAB_GRADING=1``).
2. **Check** (tools/grade_check.py), in a second sandbox that runs only the library's code: the
   log is read with limits, the last answer to each exercise of this chapter counts, settings a
   student passed (a tolerance, a size) are dropped, build tasks get fresh inputs from a seed
   drawn now, and a failed answer's message withholds the expected value.
3. A student's *function* (a build task or a formula) is run by neither of those: each call goes
   to a third sandbox (tools/grade_runner.py) that holds torch but not attnlab, and in which the
   reference the task is checked against raises.

Anything unexpected about one notebook (a crash, a time-out, a damaged log, a checker that
fails, the grader's own error) becomes a row for that student and the run goes on. Writes
``OUT/grades.csv`` (one row per student, notebook and exercise, with ``points``),
``OUT/grades.md`` and ``OUT/grades-moodle.csv`` (one row per student, for Moodle's grade import).
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
import attnlab  # noqa: E402
from attnlab.exercises import REGISTRY  # noqa: E402
from grade_sandbox import (FrameError, Limits, Sandbox, clean_env, python_paths,  # noqa: E402
                           read_capped, recv, runner_paths, send, spawn, stop, wait)

FIELDS = ["student", "notebook", "exercise", "passed", "points", "message", "seconds"]
TOOLS = ROOT / "tools"
WIRE = ROOT / "attnlab" / "exercises" / "_wire.py"
PACKAGE = Path(attnlab.__file__).resolve().parent
MAX_NOTEBOOK = 20 * 2**20            # bytes of a handed-in notebook
MAX_LOG = 16 * 2**20                 # bytes of a grade log that are read
MAX_RESULT = 64 * 2**10              # bytes of the run's result file
MAX_REPLY = 32 * 2**20               # bytes of one answer of a student's function
LOG, RESULT = ".grade_log.jsonl", ".grade_result.json"


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
NOT_ATTEMPTED = "not attempted: the checker was never called"


def chapters() -> dict[str, list[str]]:
    """Each chapter's file stem and the labels of its checked exercises, from the book's own
    notebooks (so that deleting an exercise from a submission does not hide it)."""
    out = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        labels = re.findall(r":label: (ex-[\w-]+)", path.read_text())
        out[path.stem] = [label for label in dict.fromkeys(labels) if label in REGISTRY]
    return out


def exercises_of(notebook: Path) -> list[str]:
    """The checked exercises of the chapter that ``notebook`` is named after ([] if none)."""
    return chapters().get(Path(notebook).stem, [])


class Grader:
    def __init__(self, timeout: float, function_timeout: float, limits: Limits,
                 use_bwrap: bool = True):
        self.timeout, self.function_timeout, self.limits = timeout, function_timeout, limits
        self.sandbox = Sandbox(use_bwrap)
        self.chapters = chapters()
        self.checker = None                      # the checking process, started when needed

    # --- step 1: run the notebook --------------------------------------------------------------

    def run(self, data: bytes, name: str) -> tuple[dict, bytes | None, str, float]:
        """Run one notebook; returns (outcome, grade log, what was wrong with the log, seconds)."""
        work = Path(tempfile.mkdtemp(prefix="grade-run-"))
        try:
            (work / name).write_bytes(data)
            for f in (LOG, RESULT):
                (work / f).write_bytes(b"")
            home = self.sandbox.home(work)
            env = clean_env(home, {"ATTNLAB_GRADING": "1", "ATTNLAB_GRADE_LOG": f"{home}/{LOG}"})
            cmd = self.sandbox.command(
                [sys.executable, "-s", str(TOOLS / "grade_execute.py"), f"{home}/{name}",
                 f"{home}/{RESULT}"], work, ro=[*python_paths(), PACKAGE, TOOLS / "grade_execute.py"],
                files=[name], rw=[LOG, RESULT], env=env, limits=self.limits)
            start = time.monotonic()
            with open(work / "output", "wb") as output:
                proc = spawn(cmd, limits=self.limits, cpu_seconds=self.timeout * (os.cpu_count() or 1) + 60,
                             cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT)
                finished = wait(proc, start + self.timeout)
                stop(proc)
            seconds = time.monotonic() - start
            log, log_problem = read_capped(work / LOG, MAX_LOG)
            if not finished:
                return ({"status": "timeout", "detail": f"stopped after the time limit of "
                                                        f"{self.timeout:.0f} s"},
                        log, log_problem, seconds)
            return self._outcome(work, proc.returncode), log, log_problem, seconds
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _outcome(work: Path, returncode: int) -> dict:
        """What the run says about itself (a claim about the student's own run, validated)."""
        raw, _ = read_capped(work / RESULT, MAX_RESULT)
        try:
            result = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            result = None
        if (isinstance(result, dict) and result.get("status") in ("ran", "errors", "crashed",
                                                                  "unreadable")
                and isinstance(result.get("detail", ""), str)):
            return {"status": result["status"], "detail": result.get("detail", "")[:2000]}
        try:
            with open(work / "output", "rb") as f:            # the grader's own file
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4000))
                tail = f.read(4000)
        except OSError:
            tail = b""
        lines = tail.decode("utf-8", "replace").splitlines()
        tail = " ".join(" ".join(line for line in lines if "CurveZMQ" not in line
                                 and "eavesdropping" not in line).split()[-30:])
        return {"status": "crashed", "detail": f"the run stopped (exit {returncode}) without a "
                                               f"valid report" + (f": {tail}" if tail else "")}

    # --- steps 2 and 3: check the answers ------------------------------------------------------

    def check(self, labels: list[str], log: bytes, truncated: bool) -> tuple[dict, list[str]]:
        """The verdicts (label -> dict) on ``log`` and notes; raises CheckFailed."""
        if self.checker is None:
            self.checker = Checker(self.sandbox, self.limits, self.function_timeout)
        for attempt in (1, 2):              # a fresh checking process once, if the first stopped
            deadline = time.monotonic() + 120 + len(labels) * (self.function_timeout + 90)
            try:
                reply = self.checker.verdicts(labels, log, truncated, secrets.randbits(62),
                                              deadline)
                break
            except CheckFailed as e:
                if attempt == 2 or "timed out" in str(e):
                    raise
        verdicts = {}
        for v in reply.get("verdicts", []) if isinstance(reply, dict) else []:
            if isinstance(v, dict) and v.get("exercise") in labels \
                    and isinstance(v.get("passed"), bool) and isinstance(v.get("message"), str):
                verdicts[v["exercise"]] = v
        notes = [str(n)[:300] for n in reply.get("notes", [])][:10] if isinstance(reply, dict) else []
        return verdicts, notes

    def close(self) -> None:
        if self.checker is not None:
            self.checker.close()
        self.sandbox.close()

    # --- one notebook, one student, the class --------------------------------------------------

    def notebook(self, student: str, path: Path) -> list[dict]:
        base = {"student": student, "notebook": path.stem, "seconds": ""}

        def row(exercise, passed, message, points=""):
            return {**base, "exercise": exercise, "passed": passed, "points": points,
                    "message": message}

        labels = self.chapters.get(path.stem)
        if labels is None:
            return [row("(notebook)", False, "not graded: not a chapter of the book (name the "
                                             "notebook like the book's, e.g. 02_self_attention.ipynb)")]
        data, problem = read_capped(path, MAX_NOTEBOOK)
        if problem:
            return [row("(notebook)", False, f"not graded: the notebook is {problem}")] + \
                [row(label, False, "not graded: the notebook could not be read", 0)
                 for label in labels]
        outcome, log, log_problem, seconds = self.run(data, path.name)
        base["seconds"] = f"{seconds:.1f}"
        message = {"ran": "ran to the end", "errors": "ran, with errors: ",
                   "crashed": "crashed: ", "timeout": "did not finish: ",
                   "unreadable": "is not a readable notebook: "}[outcome["status"]]
        message += outcome["detail"]
        verdicts, notes = {}, []
        if log_problem and log_problem != "missing" and not log_problem.startswith("over"):
            notes.append(f"the grade log is {log_problem}: not read")
        elif log:
            try:
                verdicts, notes = self.check(labels, log, log_problem.startswith("over"))
            except CheckFailed as e:
                notes.append(f"the answers could not be checked ({e})")
        rows = [row("(notebook)", outcome["status"] == "ran",
                    message + "".join(f"; {n}" for n in notes))]
        for label in labels:
            v = verdicts.get(label)
            rows.append(row(label, v["passed"], v["message"], int(v["passed"])) if v else
                        row(label, False, NOT_ATTEMPTED, 0))
        return rows

    def student(self, entry: os.DirEntry) -> list[dict]:
        if not entry.is_dir(follow_symlinks=False):
            kind = "a symbolic link" if entry.is_symlink() else "a file"
            return [{"student": entry.name, "notebook": "", "exercise": "(student)",
                     "passed": False, "points": "", "seconds": "",
                     "message": f"not graded: {kind}, not a folder of notebooks"}]
        with os.scandir(entry.path) as it:
            entries = sorted(it, key=lambda e: e.name)
        notebooks = [e for e in entries if e.name.endswith(".ipynb")]
        if not notebooks:
            return [{"student": entry.name, "notebook": "", "exercise": "(student)",
                     "passed": False, "points": "", "seconds": "",
                     "message": f"no notebook handed in ({len(entries)} other file(s))"}]
        rows = []
        for nb in notebooks:
            try:
                rows += self.notebook(entry.name, Path(nb.path))
            except Exception as e:  # noqa: BLE001 - the grader's own failure: one row, go on
                traceback.print_exc()
                rows.append({"student": entry.name, "notebook": nb.name.removesuffix(".ipynb"),
                             "exercise": "(notebook)", "passed": False, "points": "",
                             "seconds": "", "message": f"the grader failed on this notebook "
                                                       f"({type(e).__name__}: {e})"})
        return rows


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
                                   self.work, ro=[*python_paths(), PACKAGE, TOOLS / "grade_check.py"],
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
                payload = recv(self.proc.stdout.fileno(), deadline, 4 * MAX_LOG)
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
        self.proc = spawn(cmd, limits=checker.limits, cpu_seconds=checker.function_timeout * 4 + 120,
                          cwd=self.work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            send(self.proc.stdin.fileno(), json.dumps(
                {"op": "load", "function": function, "forbid": forbid}).encode(), deadline)
            reply = recv(self.proc.stdout.fileno(), deadline, 1 << 20)
            answer = json.loads(reply) if reply else {}
            if not isinstance(answer, dict) or not answer.get("ok"):
                error = answer.get("error") if isinstance(answer, dict) else None
                self.fail(str(error) if error else "your function's sandbox stopped while "
                                                   "loading it")
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


# --- the class ---------------------------------------------------------------------------------

def grade(submissions: Path, out: Path, timeout: float, *, function_timeout: float = 30,
          limits: Limits | None = None, use_bwrap: bool = True) -> list[dict]:
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    grader = Grader(timeout, function_timeout, limits or Limits(), use_bwrap)
    rows: list[dict] = []
    students: list[str] = []
    try:
        with os.scandir(submissions) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                students.append(entry.name)
            try:
                new = grader.student(entry)
            except Exception as e:  # noqa: BLE001 - an unreadable folder: one row, go on
                new = [{"student": entry.name, "notebook": "", "exercise": "(student)",
                        "passed": False, "points": "", "seconds": "",
                        "message": f"the grader could not read this folder ({type(e).__name__}: {e})"}]
            rows += new
            for r in new:
                if r["exercise"] in ("(notebook)", "(student)"):
                    print(f"{_plain(r['student'])}/{_plain(r['notebook'])}: "
                          f"{_plain(r['message'])[:100]}", flush=True)
    finally:
        write_tables(rows, students, out, grader, timeout)
        grader.close()
    return rows


# --- the tables --------------------------------------------------------------------------------

def _plain(value, limit: int = 2000) -> str:
    """Text without control characters or broken UTF-8, at most ``limit`` characters."""
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]",
                  " ", text)                      # controls, bidi overrides, invisible marks
    return text if len(text) <= limit else text[:limit - 1] + "…"


def csv_cell(value, limit: int = 2000) -> str:
    """A cell no spreadsheet runs as a formula: a leading = + - @ (or tab, CR) gets a quote."""
    text = _plain(value, limit)
    return "'" + text if text.lstrip()[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def md_cell(value, limit: int = 500) -> str:
    """A Markdown table cell that is text: HTML, pipes, code spans and links escaped."""
    text = html.escape(_plain(value, limit), quote=False)
    return re.sub(r"([\\|`*_\[\]])", r"\\\1", text)


def write_tables(rows: list[dict], students: list[str], out: Path, grader: Grader,
                 timeout: float) -> None:
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: csv_cell("yes" if r[k] is True else "no" if r[k] is False
                                         else r[k]) for k in FIELDS})
    columns = list(dict.fromkeys((r["notebook"], r["exercise"]) for r in rows
                                 if r["points"] != ""))
    points = {(r["student"], r["notebook"], r["exercise"]): int(r["points"])
              for r in rows if r["points"] != ""}
    with open(out / "grades-moodle.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["username"] + [csv_cell(f"{n} {e}") for n, e in columns] + ["total"])
        for s in students:
            got = [points.get((s, n, e), 0) for n, e in columns]
            writer.writerow([csv_cell(s)] + got + [sum(got)])
    limits = grader.limits
    isolation = (
        "each notebook ran in a bubblewrap sandbox (no network, nothing of the machine but "
        "Python, its packages and attnlab, read-only; its own PID namespace, killed as a whole "
        "at the time limit), and each student's function ran in a sandbox without attnlab"
        if grader.sandbox.isolated else
        "WARNING: bubblewrap (bwrap) is not available here (run `make sandbox`), so the "
        "notebooks ran WITHOUT network or file-system isolation: each in its own folder, "
        "under the time and resource limits only")
    lines = ["# Grades", "",
             f"Time limit per notebook: {timeout:.0f} s; {isolation}. Limits per process: "
             f"{limits.memory / 2**30:.0f} GiB of memory, files of {limits.file_size / 2**20:.0f}"
             f" MiB, {limits.processes} processes, a home of {limits.disk / 2**20:.0f} MiB."
             + (" WARNING: the grader runs as root, and Linux does not apply the process limit "
                "to root: run it as an ordinary user." if os.geteuid() == 0 else ""),
             "", "The last answer to each exercise counts.", "",
             "| student | notebook | exercise | passed | points | message | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        passed = "yes" if r["passed"] else "no"
        lines.append("| " + " | ".join(md_cell(v) for v in (
            r["student"], r["notebook"], r["exercise"], passed, r["points"], r["message"],
            r["seconds"])) + " |")
    (out / "grades.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path, help="one folder per student")
    parser.add_argument("--out", type=Path, default=Path("grades"))
    parser.add_argument("--timeout", type=float, default=300, help="seconds per notebook")
    parser.add_argument("--function-timeout", type=float, default=30,
                        help="seconds for all the calls of one submitted function")
    parser.add_argument("--memory", type=float, default=8, help="GiB of memory per process")
    args = parser.parse_args()
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of student folders")
    limits = Limits(memory=int(args.memory * 2**30))
    rows = grade(args.submissions, args.out, args.timeout, function_timeout=args.function_timeout,
                 limits=limits)
    print(f"{len(rows)} rows written to {args.out / 'grades.csv'}, {args.out / 'grades.md'} "
          f"and {args.out / 'grades-moodle.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
