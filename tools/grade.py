"""Grade a class: run each student's notebooks in isolation and table what the checkers said.

    python tools/grade.py SUBMISSIONS [--out grades] [--timeout 300]

``SUBMISSIONS`` holds one folder per student, each with that student's notebooks (copies of the
student edition, worked on). Every notebook runs on its own, one after the other:

* in a fresh temporary folder that holds only a copy of it, with HOME and every cache there;
* under a time limit: when it runs out the whole process group (the kernel too) is killed;
* where Linux allows it (``unshare``), in new user, mount and network namespaces: no network
  (only a loopback device), the submissions folder and the output folder hidden under empty
  file systems, and every other file system read-only, so that a notebook can neither read
  another student's work nor change anything outside its own folder. Without ``unshare`` the
  notebook still runs in its own folder under the time limit, and the report says the
  isolation was missing.

Each checker of :mod:`attnlab.exercises` that a notebook calls appends the student's *answer* to a
log (``ATTNLAB_GRADE_LOG``): numbers and tensors as they are, a function as what it returned to the
checker. After the run the grader, in its own process, runs the registered checker again on that
answer (:func:`attnlab.exercises.regrade`) and reports its own verdict, so a verdict typed into
the log does not count. It writes ``OUT/grades.csv`` and ``OUT/grades.md``: one row per
(student, notebook, exercise) with ``passed``, the checker's message and the notebook's time; a
row "not attempted" for each exercise of the notebook that has a checker but was never checked;
and a row per notebook (exercise ``(notebook)``) that says whether it ran, crashed in which cell,
or ran out of time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from attnlab.exercises import REGISTRY, regrade  # noqa: E402
FIELDS = ["student", "notebook", "exercise", "passed", "message", "seconds"]


def sandbox_available() -> bool:
    """Whether user, mount and network namespaces can be made here."""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rmn", "true"], capture_output=True).returncode == 0


def _sandboxed(command: list[str], work: Path, hidden: list[Path]) -> list[str]:
    """``command`` inside new namespaces: loopback only, ``hidden`` emptied, all else read-only."""
    steps = ["ip link set lo up", "mount -t tmpfs tmpfs /dev/shm"]
    steps += [f"mount -t tmpfs tmpfs {shlex.quote(str(p))}" for p in hidden if p.exists()]
    steps += [f"mount --bind {shlex.quote(str(work))} {shlex.quote(str(work))}",
              "mount -o remount,bind,ro /",
              "exec " + shlex.join(command)]
    return ["unshare", "-rmn", "sh", "-c", " && ".join(steps)]


def run_one(notebook: Path, work: Path, timeout: float, hidden: list[Path],
            sandbox: bool) -> tuple[dict, list[dict], float]:
    """Run ``notebook`` in ``work``; returns (outcome, checker records, seconds)."""
    copy = work / notebook.name
    shutil.copy(notebook, copy)
    log, result = work / "grade_log.jsonl", work / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATTNLAB_", "JUPYTER"))}
    env.update(HOME=str(work), ATTNLAB_GRADE_LOG=str(log), MPLCONFIGDIR=str(work / ".mpl"),
               IPYTHONDIR=str(work / ".ipython"), JUPYTER_RUNTIME_DIR=str(work / ".runtime"),
               JUPYTER_DATA_DIR=str(work / ".jupyter"), TMPDIR=str(work), PYTHONNOUSERSITE="1")
    command = [sys.executable, str(Path(__file__).resolve()), "--execute", str(copy),
               str(result)]
    if sandbox:
        command = _sandboxed(command, work, hidden)
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        outcome = (json.loads(result.read_text()) if result.exists() else
                   {"status": "crashed", "detail": f"the run stopped (exit {proc.returncode}): "
                                                   + " ".join(out.split()[-30:])})
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        outcome = {"status": "timeout", "detail": f"stopped after the time limit of "
                                                  f"{timeout:.0f} s"}
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return outcome, records, seconds


def execute(notebook: Path, result: Path) -> None:
    """(Inside the sandbox) run every cell, keep going after errors, write what happened."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=None, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute()
    except Exception as e:  # noqa: BLE001 - a dead kernel or the like: report it
        result.write_text(json.dumps({"status": "crashed",
                                      "detail": f"{type(e).__name__}: {e}"[:500]}))
        return
    errors = [f"cell {i + 1}: {o.ename}: {o.evalue}"[:300]
              for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.output_type == "error"]
    result.write_text(json.dumps({"status": "errors" if errors else "ran",
                                  "detail": "; ".join(errors)}))


def grade(submissions: Path, out: Path, timeout: float) -> list[dict]:
    submissions, out = submissions.resolve(), out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sandbox = sandbox_available()
    rows = []
    for student in sorted(p for p in submissions.iterdir() if p.is_dir()):
        for notebook in sorted(student.glob("*.ipynb")):
            work = Path(tempfile.mkdtemp(prefix="grade-"))
            try:
                outcome, records, seconds = run_one(notebook, work, timeout,
                                                    [submissions, out], sandbox)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            base = {"student": student.name, "notebook": notebook.stem,
                    "seconds": f"{seconds:.1f}"}
            ran = outcome["status"] == "ran"
            message = {"ran": "ran to the end", "errors": "ran, with errors: ",
                       "crashed": "crashed: ", "timeout": "did not finish: "}[outcome["status"]]
            rows.append({**base, "exercise": "(notebook)", "passed": ran,
                         "message": message + outcome.get("detail", "")})
            checked = [{**base, **verdict(r)} for r in records]
            seen = {r["exercise"] for r in checked}
            checked += [{**base, "exercise": label, "passed": False,
                         "message": "not attempted: the checker was never called"}
                        for label in exercises_of(notebook) if label not in seen]
            rows += checked
            print(f"{student.name}/{notebook.name}: {outcome['status']}, "
                  f"{sum(r['passed'] for r in checked)}/{len(checked)} exercises passed, "
                  f"{seconds:.1f} s", flush=True)
    write_tables(rows, out, sandbox, timeout)
    return rows


def exercises_of(notebook: Path) -> list[str]:
    """Labels of the checked exercises of ``notebook``: those of the book's chapter of the same
    name (so that deleting an exercise does not hide it), else those found in the notebook."""
    book = ROOT / "notebooks" / notebook.name
    try:
        text = (book if book.exists() else notebook).read_text()
    except (OSError, UnicodeDecodeError):
        return []
    labels = re.findall(r":label: (ex-[\w-]+)", text)
    return [label for label in dict.fromkeys(labels) if label in REGISTRY]


def verdict(record: dict) -> dict:
    """The grader's own verdict on one logged answer (the notebook's is not trusted)."""
    label = str(record.get("exercise", "?"))
    if label not in REGISTRY:
        return {"exercise": label, "passed": False,
                "message": "unknown exercise: " + str(record.get("message", ""))[:500]}
    try:
        feedback = regrade(record)
    except Exception as e:  # noqa: BLE001 - a damaged or forged record
        return {"exercise": label, "passed": False,
                "message": f"the logged answer could not be re-checked ({type(e).__name__})"}
    message = str(feedback)
    if bool(record.get("ok")) != feedback.ok:
        message += " (the notebook printed a different verdict)"
    return {"exercise": label, "passed": feedback.ok, "message": message}


def write_tables(rows: list[dict], out: Path, sandbox: bool, timeout: float) -> None:
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    isolation = ("each notebook ran in its own namespaces: no network, other submissions "
                 "hidden, the rest of the disk read-only" if sandbox else
                 "WARNING: `unshare` is not available here, so the notebooks ran without "
                 "network or file-system isolation (own folder and time limit only)")
    lines = ["# Grades", "", f"Time limit per notebook: {timeout:.0f} s; {isolation}.", "",
             "| student | notebook | exercise | passed | message | seconds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        message = str(r["message"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['student']} | {r['notebook']} | {r['exercise']} | "
                     f"{'yes' if r['passed'] else 'no'} | {message} | {r['seconds']} |")
    (out / "grades.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--execute":
        execute(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path, help="one folder per student")
    parser.add_argument("--out", type=Path, default=Path("grades"))
    parser.add_argument("--timeout", type=float, default=300, help="seconds per notebook")
    args = parser.parse_args()
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of student folders")
    rows = grade(args.submissions, args.out, args.timeout)
    print(f"{len(rows)} rows written to {args.out / 'grades.csv'} and "
          f"{args.out / 'grades.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
