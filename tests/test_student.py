"""The student edition (`make student`): no solutions, a cell to work in for each exercise.

That it runs from top to bottom is checked by nbval, which `make test` runs over the student
edition (see `make nbval-copies`), not over the full notebooks.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
from student_edition import is_solution, student_copy  # noqa: E402


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_edition_has_a_place_for_every_solution(path):
    nb, removed = student_copy(nbformat.read(path, as_version=4))
    assert removed >= 3 and not any(is_solution(c) for c in nb.cells)
    placeholders = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Your solution here")]
    stubs = [c for c in nb.cells if "stub" in c.metadata.get("tags", [])]
    exercises = sum(c.source.count("{exercise}") for c in nb.cells if c.cell_type == "markdown")
    assert len(placeholders) + len(stubs) >= exercises >= 5   # a place to work for every exercise


def test_make_student_writes_every_notebook(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "student_edition.py"), str(ROOT / "notebooks"),
                          str(tmp_path)], capture_output=True, text=True, check=True).stdout
    written = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS]
    assert "solution cells removed" in out


def test_nbval_runs_the_student_edition():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nnbval-copies:", 1)[1].split("\n\n", 1)[0]
    assert "student_edition.py" in recipe and "--inject" in recipe
    script = (ROOT / "tools" / "test.sh").read_text()
    assert "ATTNLAB_SEED=1 ATEN_CPU_CAPABILITY=default" in script and "_nbval --nbval-lax" in script
