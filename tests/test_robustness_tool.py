"""tools/robustness.py: a runs file keeps the rows of the chapters not re-run."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import robustness  # noqa: E402

MACHINE = {"kind": "machine", "label": "x", "device": "cpu", "cpu": "avx512", "cores": 2,
           "torch": "2.14.1", "python": "3.11.7"}


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_rerun_replaces_its_chapter_and_keeps_the_others(tmp_path):
    out = tmp_path / "runs.jsonl"
    old = [MACHINE, {"kind": "run", "notebook": "01_a", "seed": "0"},
           {"kind": "target", "notebook": "02_b", "name": "t", "value": 1.0},
           {"kind": "run", "notebook": "02_b", "seed": "0"}]
    out.write_text("".join(json.dumps(r) + "\n" for r in old))
    robustness.start_file(out, dict(MACHINE), {"02_b"})
    robustness.append_rows(out, [{"kind": "run", "notebook": "02_b", "seed": "1"}])
    got = rows(out)
    assert got[0] == MACHINE and sum(r["kind"] == "machine" for r in got) == 1
    assert {(r.get("notebook"), r.get("seed")) for r in got[1:]} == {("01_a", "0"), ("02_b", "1")}


def test_a_new_machine_is_described_and_a_new_file_made(tmp_path):
    out = tmp_path / "runs.jsonl"
    robustness.start_file(out, dict(MACHINE), {"01_a"})
    other = {**MACHINE, "cpu": "avx2"}
    robustness.start_file(out, other, {"01_a"})
    assert [r["cpu"] for r in rows(out) if r["kind"] == "machine"] == ["avx2", "avx512"]


def test_the_script_records_its_cpu_time(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = sum(range(10))\n", "%time x\n"]}]}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    script = robustness.notebook_script(path)
    assert "RUSAGE_SELF" in script and "%time" not in script
