"""The run times the README quotes, generated from the committed measurements.

    python tools/measured.py           # rewrite the README's measured block
    python tools/measured.py --check   # exit 1 if that block is stale (a test runs this)

The block sits between ``<!-- measured -->`` and ``<!-- /measured -->`` in README.md and is made
from ``book/robustness_runs/*-cpu.jsonl`` (every chapter run as a script over seeds and CPU kernel
sets by ``make robustness``), so the README cannot promise a time the measurements do not show.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- measured -->", "<!-- /measured -->"


def block() -> str:
    lines = []
    for path in sorted((ROOT / "book" / "robustness_runs").glob("*-cpu.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        machine = next(r for r in rows if r["kind"] == "machine")
        times, cpu = defaultdict(list), defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r["kind"] == "run":
                times[r["notebook"]].append(r["seconds"])
                if r.get("cpu_seconds") is not None:
                    cpu[r.get("kernels", "native")][r["notebook"]].append(r["cpu_seconds"])
        medians = {nb: statistics.median(t) for nb, t in times.items()}
        fastest, slowest = min(medians, key=medians.get), max(medians, key=medians.get)
        worst = max(times, key=lambda nb: max(times[nb]))
        runs = sorted({len(t) for t in times.values()})
        over = sorted(int(nb[:2]) for nb, m in medians.items() if m > 60)
        lines.append(
            f"Each chapter's wall-clock run time as a script on a {machine['cores']}-core "
            f"{machine['cpu'].upper()} CPU (PyTorch {machine['torch']}), from "
            f"`book/robustness_runs/{path.name}` ({'/'.join(map(str, runs))} runs per chapter, "
            f"seeds x CPU kernel sets): medians from {medians[fastest]:.0f} s (chapter "
            f"{int(fastest[:2])}) to {medians[slowest]:.0f} s (chapter {int(slowest[:2])}); the "
            f"slowest single run took {max(times[worst]):.0f} s (chapter {int(worst[:2])}). "
            + (f"Chapters with a median over a minute: {', '.join(map(str, over))}."
               if over else "Every chapter's median is under a minute.")
            + (f" These runs were {machine['note']}." if machine.get("note") else "")
            + _cpu_sentence(cpu))
    return "\n".join([START, *lines, END])


def _cpu_sentence(cpu: dict) -> str:
    """The CPU seconds of the notebooks' own processes (one core), per kernel set, where the runs
    recorded them: the machine's own kernels are what a reader runs (the 60 s budget); PyTorch's
    portable kernels check that no result depends on the kernels and are slower by design."""
    parts = []
    for kernels, what in (("native", "with the machine's own CPU kernels (what a reader runs)"),
                          ("default", "with PyTorch's portable kernels "
                                      "(`ATEN_CPU_CAPABILITY=default`, slower by design)")):
        if not cpu.get(kernels):
            continue
        medians = {nb: statistics.median(t) for nb, t in cpu[kernels].items()}
        over = sorted(int(nb[:2]) for nb, m in medians.items() if m > 60)
        parts.append(f"{what}, medians "
                     + ", ".join(f"{medians[nb]:.0f} s (chapter {int(nb[:2])})"
                                 for nb in sorted(medians))
                     + "; " + (f"over a minute: {', '.join(map(str, over))}" if over
                               else "every one under a minute"))
    if not parts:
        return ""
    parts[1:] = [p[0].upper() + p[1:] for p in parts[1:]]
    return " CPU seconds of the notebook's own process (one thread): " + ". ".join(parts) + "."


def main() -> int:
    text = README.read_text()
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 1
    new = head + block() + tail
    if "--check" in sys.argv[1:]:
        if new != text:
            print("README.md's measured block is stale: run `python tools/measured.py`\n"
                  + block(), file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
