"""A made-up class for the grader: one folder per student, each with one notebook.

    python tools/demo_class.py DEST      # then: python tools/grade.py DEST

The students cover what a real class hands in:

* ``alice`` answers both checked exercises of chapter 2 right (a number and a function);
* ``bob`` answers both wrong (the unscaled factor; attention without the 1/sqrt(d) scale);
* ``carol`` has a cell that raises before her (right) answers;
* ``dave`` has a cell that never stops;
* ``oscar`` answers, then kills his own kernel;
* ``erin`` hands in the student edition's exercise cells untouched: "Not done yet";
* ``frank`` never calls a checker: every checked exercise is "not attempted";
* ``mallory`` writes a false "passed" into the grade log, and tries to read another student's
  notebook, reach the network and delete a file outside her folder (``probe`` row).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "02_self_attention"
RIGHT = '''
import torch
from attnlab.exercises import check_attention_scale, check_sdpa


def my_attention(q, k, v, mask=None, is_causal=False):
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5{scale_bug}
    if is_causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, -1) @ v


print(check_attention_scale({factor}))
print(check_sdpa(my_attention))
'''
PROBE = '''
import json, os, socket, pathlib
found = {{}}
try:
    found["other"] = pathlib.Path({other!r}).read_text()[:20]
except OSError as e:
    found["other"] = type(e).__name__
try:
    socket.create_connection(("1.1.1.1", 80), timeout=3)
    found["network"] = "connected"
except OSError as e:
    found["network"] = type(e).__name__
try:
    pathlib.Path({canary!r}).unlink()
    found["delete"] = "deleted"
except OSError as e:
    found["delete"] = type(e).__name__
with open(os.environ["ATTNLAB_GRADE_LOG"], "a") as f:
    f.write(json.dumps({{"exercise": "probe", "ok": False, "message": json.dumps(found)}}) + "\\n")
    forged = {{"args": [0.5], "kwargs": {{}}}}
    f.write(json.dumps({{"exercise": "ex-self-attention-scale", "ok": True,
                        "message": "Correct!", "answer": json.dumps(forged)}}) + "\\n")
'''


def _exercise_cells(with_stubs: bool) -> list:
    """The exercise statements of the chapter (and, if asked, its unfilled stubs)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from student_edition import student_copy
    nb, _ = student_copy(nbformat.read(ROOT / "notebooks" / f"{CHAPTER}.ipynb", as_version=4))
    start = next(i for i, c in enumerate(nb.cells) if "{exercise}" in c.source)
    cells = [c for c in nb.cells[start:] if c.cell_type == "markdown"
             or (with_stubs and "stub" in c.metadata.get("tags", []))]
    for i, c in enumerate(cells):
        c["id"] = f"exercise-{i}"
    return cells


def _notebook(path: Path, cells: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)


def make_class(dest: Path, canary: Path | None = None) -> Path:
    """Write the made-up class into ``dest``; returns the canary file ``mallory`` tries to
    delete (``canary`` or ``dest/../canary.txt``)."""
    dest = Path(dest).resolve()
    name = f"{CHAPTER}.ipynb"
    right = RIGHT.format(scale_bug="", factor="1 / (4 * 256 ** 0.5)")
    wrong = RIGHT.format(scale_bug=" * q.shape[-1] ** 0.5", factor="1 / 256 ** 0.5")
    _notebook(dest / "alice" / name, [right])
    _notebook(dest / "bob" / name, [wrong])
    _notebook(dest / "carol" / name, ["raise ValueError('my weights are not ready')", right])
    _notebook(dest / "dave" / name, ["while True:\n    pass", right])
    _notebook(dest / "oscar" / name, [right, "import os\nos._exit(3)", "print('never runs')"])
    _notebook(dest / "erin" / name, _exercise_cells(with_stubs=True))
    _notebook(dest / "frank" / name, _exercise_cells(with_stubs=False))
    canary = Path(canary or dest.parent / "canary.txt")
    canary.write_text("still here")
    _notebook(dest / "mallory" / name, [PROBE.format(other=str(dest / "alice" / name),
                                                     canary=str(canary))])
    return canary


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps({"canary": str(make_class(Path(sys.argv[1])))}))
