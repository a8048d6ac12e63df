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
   reference the task is checked against raises. This process relays the calls, each with a
   deadline and a size limit (tools/grade_relay.py).

Anything unexpected about one notebook (a crash, a time-out, a damaged log, a checker that
fails, the grader's own error) becomes a row for that student and the run goes on. Writes
``OUT/grades.csv`` (one row per student, notebook and exercise, with ``points``),
``OUT/grades.md`` and ``OUT/grades-moodle.csv`` (one row per student, for Moodle's grade import;
tools/grade_tables.py makes every cell safe).
"""
from __future__ import annotations

import argparse
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
from attnlab.exercises import REGISTRY  # noqa: E402
from grade_relay import PACKAGE, CheckFailed, Checker, Runner  # noqa: E402,F401
from grade_sandbox import (Limits, Sandbox, clean_env, python_paths, read_capped,  # noqa: E402
                           spawn, stop, wait)
from grade_tables import (FIELDS, _plain, clean_row, csv_cell, md_cell, remove_tables,  # noqa: E402,F401
                          sanitise, write_tables)

TOOLS = ROOT / "tools"
MAX_NOTEBOOK = 20 * 2**20            # bytes of a handed-in notebook
MAX_LOG = 16 * 2**20                 # bytes of a grade log that are read
MAX_RESULT = 64 * 2**10              # bytes of the run's result file
LOG, RESULT = ".grade_log.jsonl", ".grade_result.json"
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
        private = Path(tempfile.mkdtemp(prefix="grade-out-"))   # never the notebook's home
        try:
            (work / name).write_bytes(data)
            for f in (LOG, RESULT):
                (work / f).write_bytes(b"")
            home = self.sandbox.home(work)
            env = clean_env(home, {"ATTNLAB_GRADING": "1", "ATTNLAB_GRADE_LOG": f"{home}/{LOG}"})
            cmd = self.sandbox.command(
                [sys.executable, "-s", str(TOOLS / "grade_execute.py"), f"{home}/{name}",
                 f"{home}/{RESULT}"], work,
                ro=[*python_paths(), PACKAGE, TOOLS / "grade_execute.py"],
                files=[name], rw=[LOG, RESULT], env=env, limits=self.limits)
            start = time.monotonic()
            with open(private / "output", "wb") as output:
                cpu = self.timeout * (os.cpu_count() or 1) + 60
                proc = spawn(cmd, limits=self.limits, cpu_seconds=cpu,
                             cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT)
                finished = wait(proc, start + self.timeout)
                stop(proc)
            seconds = time.monotonic() - start
            log, log_problem = read_capped(work / LOG, MAX_LOG)
            if not finished:
                return ({"status": "timeout", "detail": f"stopped after the time limit of "
                                                        f"{self.timeout:.0f} s"},
                        log, log_problem, seconds)
            return self._outcome(work, private, proc.returncode), log, log_problem, seconds
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(private, ignore_errors=True)

    @staticmethod
    def _outcome(work: Path, private: Path, returncode: int) -> dict:
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
            with open(private / "output", "rb") as f:          # the grader's own file
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
        notes = [str(n)[:300] for n in reply.get("notes", [])][:10] \
            if isinstance(reply, dict) else []
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
        start = time.monotonic()
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
        base["seconds"] = f"{time.monotonic() - start:.1f}"    # the run and the check
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


# --- the class ---------------------------------------------------------------------------------

def grade(submissions: Path, out: Path, timeout: float, *, function_timeout: float = 30,
          limits: Limits | None = None, use_bwrap: bool = True) -> list[dict]:
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    remove_tables(out)                  # a run that fails leaves no earlier run's tables behind
    grader = Grader(timeout, function_timeout, limits or Limits(), use_bwrap)
    rows: list[dict] = []
    students: list[str] = []
    try:
        try:
            with os.scandir(submissions) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name)
            refused = ambiguous_names([e.name for e in entries])
            for entry in entries:
                name = sanitise(entry.name)
                if entry.name in refused:
                    new = [{"student": ascii(entry.name)[:200], "notebook": "",
                            "exercise": "(student)", "passed": False, "points": "",
                            "seconds": "", "message": f"not graded: the folder name "
                                                      f"{ascii(entry.name)[:200]} "
                                                      f"{refused[entry.name]}; rename it"}]
                    for r in new:
                        rows.append(_row(r, name))
                        _progress(f"{_plain(r['student'])}: {_plain(r['message'])[:100]}")
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        students.append(name)
                    new = grader.student(entry)
                except Exception as e:  # noqa: BLE001 - an unreadable folder: one row, go on
                    new = [{"student": name, "notebook": "", "exercise": "(student)",
                            "passed": False, "points": "", "seconds": "",
                            "message": f"the grader could not read this folder "
                                       f"({type(e).__name__}: {sanitise(e)})"}]
                for r in new:
                    r = _row(r, name)
                    rows.append(r)
                    if r["exercise"] in ("(notebook)", "(student)"):
                        _progress(f"{_plain(r['student'])}/{_plain(r['notebook'])}: "
                                  f"{_plain(r['message'])[:100]}")
        finally:
            write_tables(rows, students, out, isolated=grader.sandbox.isolated,
                         limits=grader.limits, timeout=timeout)
    finally:
        grader.close()
    return rows


def ambiguous_names(names: list[str]) -> dict[str, str]:
    """The folder names that cannot stand for one student in the tables, and why: a name that
    the tables would show differently (control or invisible characters, broken UTF-8, spaces at
    either end, compatibility forms such as full-width letters), or names that look the same
    (case and Unicode normalisation aside) as another's. A folder like 'alice' plus a vertical
    tab must not pass for alice; neither of two such look-alikes is graded."""
    import unicodedata
    out, keys = {}, {}
    for name in names:
        nfc = unicodedata.normalize("NFC", sanitise(name))
        if (_plain(name) != name or name.strip() != name
                or unicodedata.normalize("NFKC", nfc) != nfc
                or any(unicodedata.category(c)[0] == "C" or
                       unicodedata.category(c)[0] == "Z" and c != " " for c in name)):
            out[name] = "has characters the grade tables cannot show as they are"
        else:
            keys.setdefault(nfc.casefold(), []).append(name)
    for same in keys.values():
        if len(same) > 1:
            for name in same:
                out[name] = (f"looks the same as {len(same) - 1} other folder name(s) in the "
                             f"tables (case and accents aside)")
    return out


def _progress(line: str) -> None:
    """A progress line that cannot stop the run (an encoding the terminal lacks, a closed
    pipe)."""
    try:
        print(line, flush=True)
    except (UnicodeError, OSError, ValueError):
        try:
            print(line.encode("ascii", "replace").decode("ascii"), flush=True)
        except (OSError, ValueError):
            pass


def _row(r, student: str) -> dict:
    """``r`` with every text sanitised once (student-derived text may hold anything); a row that
    cannot be built becomes a row that says so."""
    try:
        return clean_row(r)
    except Exception as e:  # noqa: BLE001 - the row itself is broken: say so, go on
        return {"student": student, "notebook": "", "exercise": "(notebook)", "passed": False,
                "points": "", "seconds": "",
                "message": f"the grader could not build this row ({type(e).__name__})"}


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
    for stream in (sys.stdout, sys.stderr):      # progress and tracebacks can never fail to print
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
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
