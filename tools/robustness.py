"""Run every chapter over a matrix of seeds and CPU kernel sets; record every learning target.

Each notebook runs as a script (its code cells in order) in a fresh process with

- ``ATTNLAB_SEED`` = each seed (the notebooks seed everything from it),
- ``ATEN_CPU_CAPABILITY`` = each kernel set (``native`` leaves it unset: the machine's own),
- ``ATTNLAB_RECORD`` = a file to which :mod:`attnlab.report` appends every ``target`` and
  ``glue`` call (name, value, threshold);
- ``OMP_NUM_THREADS`` = 1 unless set: each run uses one core, the budget's unit.

One JSON line per record and one per run (wall-clock and CPU seconds, success, the error if
any) go to ``--out``. An existing file keeps the rows of the notebooks not run this time; the
rows of those that are run are replaced (under a lock, so two runs can share a file).
The page ``book/robustness.md`` reads every file in ``book/robustness_runs/`` and shows, per
chapter, each target's threshold and its worst, median and best value over the matrix.

    python tools/robustness.py                       # seeds 0-4 x {native, default}, 2 jobs
    python tools/robustness.py --seeds 0 1 --kernels default --jobs 1 notebooks/02_*.ipynb
    python tools/robustness.py --device cuda --kernels native --seeds 0 --label gpu

A notebook that fails (a missed target raises) is reported and counted; the run goes on.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "book" / "robustness_runs"


def notebook_script(path: Path) -> str:
    """The notebook's code cells as one script (shell and magic lines dropped)."""
    cells = json.loads(path.read_text())["cells"]
    parts = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        lines = [ln for ln in "".join(cell["source"]).splitlines() if not ln.lstrip().startswith(("%", "!"))]
        parts.append(f"# --- cell {i}\n" + "\n".join(lines))
    cpu = ("import atexit as _atexit, os as _os, resource as _resource\n"
           "_atexit.register(lambda: open(_os.environ['ATTNLAB_CPU_FILE'], 'w').write(\n"
           "    str(sum(_resource.getrusage(_resource.RUSAGE_SELF)[:2]))))\n")
    return cpu + "\n\n".join(parts) + "\n"


def machine() -> dict:
    """What the numbers depend on: CPU, its vector extensions, torch's version."""
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else platform.machine()
    try:
        import torch
        version = torch.__version__
    except ImportError:
        version = "?"
    return {"cpu": isa, "cores": os.cpu_count(), "torch": version, "python": platform.python_version()}


def run_one(path: Path, seed: int, kernels: str, python: str, device: str | None,
            timeout: int, workdir: Path) -> list[dict]:
    """Run one notebook once; return its records and one 'run' row."""
    script = workdir / f"{path.stem}.py"
    record = workdir / f"{path.stem}-{seed}-{kernels}.jsonl"
    cpu_file = workdir / f"{path.stem}-{seed}-{kernels}.cpu"
    record.unlink(missing_ok=True), cpu_file.unlink(missing_ok=True)
    env = {**os.environ, "ATTNLAB_SEED": str(seed), "ATTNLAB_RECORD": str(record),
           "ATTNLAB_CPU_FILE": str(cpu_file),
           # the budget is one core: one thread unless the caller says otherwise
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "ATTNLAB_NOTEBOOK": path.stem, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernels != "native":
        env["ATEN_CPU_CAPABILITY"] = kernels
    if device:
        env["ATTNLAB_DEVICE"] = device
    start = time.perf_counter()
    try:
        proc = subprocess.run([python, str(script)], cwd=path.parent, env=env, capture_output=True,
                              text=True, timeout=timeout)
        ok, error = proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        ok, error = False, f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    for row in rows:
        row["kernels"] = kernels  # 'native' rather than unset
    cpu = round(float(cpu_file.read_text()), 1) if cpu_file.exists() else None
    rows.append({"kind": "run", "notebook": path.stem, "seed": str(seed), "kernels": kernels,
                 "device": device or "auto", "seconds": round(seconds, 1), "cpu_seconds": cpu,
                 "ok": ok, "error": "" if ok else error})
    return rows


class _Locked:
    """``with _Locked(path):`` holds an exclusive lock beside ``path`` (other runs wait)."""

    def __init__(self, path: Path):
        self.lock = path.with_name(path.name + ".lock")

    def __enter__(self):
        self.f = self.lock.open("w")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def start_file(out: Path, machine_row: dict, notebooks: set[str]) -> None:
    """Keep the rows of ``out`` for other notebooks, drop those of ``notebooks``, and make sure
    the file describes this machine."""
    with _Locked(out):
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        kept = [r for r in rows if r["kind"] == "machine" or r.get("notebook") not in notebooks]
        same = {k: machine_row[k] for k in ("device", "cpu", "cores", "torch")}
        if not any(all(r.get(k) == v for k, v in same.items()) for r in kept if r["kind"] == "machine"):
            kept.insert(0, machine_row)
        out.write_text("".join(json.dumps(r) + "\n" for r in kept))


def append_rows(out: Path, rows: list[dict]) -> None:
    with _Locked(out), out.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--kernels", nargs="+", default=["native", "default"],
                        help="values of ATEN_CPU_CAPABILITY ('native': the machine's own)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at once")
    parser.add_argument("--device", default="cpu", help="ATTNLAB_DEVICE for the runs (default cpu)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run")
    parser.add_argument("--label", default=None, help="name of the output file in book/robustness_runs/")
    parser.add_argument("--out", type=Path, default=None, help="output file (overrides --label)")
    args = parser.parse_args()

    paths = [p.resolve() for p in (args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")))]
    info = machine()
    label = args.label or f"{info['cpu']}-{args.device}"
    out = args.out or RUNS / f"{label}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    configs = [(p, s, k) for s in args.seeds for k in args.kernels for p in paths]
    print(f"{len(configs)} runs ({len(paths)} notebooks x {len(args.seeds)} seeds x "
          f"{len(args.kernels)} kernel sets) on {info}, {args.jobs} at a time -> {out}")
    start, failed = time.perf_counter(), 0
    start_file(out, {"kind": "machine", "label": label, "device": args.device, **info},
               {p.stem for p in paths})
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        for p in paths:
            (Path(tmp) / f"{p.stem}.py").write_text(notebook_script(p))
        futures = [pool.submit(run_one, p, s, k, args.python, args.device, args.timeout, Path(tmp))
                   for p, s, k in configs]
        for future in futures:
            rows = future.result()
            run = rows[-1]
            failed += not run["ok"]
            status = "ok" if run["ok"] else f"FAILED: {run['error']}"
            cpu = f" (CPU {run['cpu_seconds']:.0f} s)" if run["cpu_seconds"] is not None else ""
            print(f"{run['notebook']:<36} seed {run['seed']} {run['kernels']:<8} "
                  f"{run['seconds']:6.1f} s{cpu}  {status}", flush=True)
            append_rows(out, rows)
    print(f"{len(configs) - failed} of {len(configs)} runs passed in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
