"""The student edition (`make student`) still runs from top to bottom without the solutions."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
from student_edition import is_solution, student_copy  # noqa: E402


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_edition_executes(path):
    nb, removed = student_copy(nbformat.read(path, as_version=4))
    assert removed >= 3 and not any(is_solution(c) for c in nb.cells)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # raises on a cell error
    placeholders = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Your solution here")]
    assert len(placeholders) >= 3


def test_make_student_writes_every_notebook(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "student_edition.py"), str(ROOT / "notebooks"),
                          str(tmp_path)], capture_output=True, text=True, check=True).stdout
    written = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS]
    assert "solution cells removed" in out
