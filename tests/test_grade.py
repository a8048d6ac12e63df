"""The grader (tools/grade.py) on a folder of made-up submissions.

Five students hand in one notebook each: a correct answer, a wrong one, one that raises before
its checker, one that never stops, and one that tries to read another student's work, reach the
network and delete a file outside its folder.
"""
import csv
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("grade", ROOT / "tools" / "grade.py")
grade = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grade)

CHECK = "from attnlab.exercises import check_soft_lookup\nprint(check_soft_lookup({}))"
PROBE = """
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
"""


def notebook(path: Path, *cells: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells],
                                            metadata={"kernelspec": {"name": "python3",
                                                                     "display_name": "Python 3",
                                                                     "language": "python"}}),
                   path)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs, out = base / "submissions", base / "grades"
    right = "[0.5761, 0.2839, 0.1400]"
    notebook(subs / "alice" / "01_attention_as_soft_lookup.ipynb", CHECK.format(right))
    notebook(subs / "bob" / "01_attention_as_soft_lookup.ipynb", CHECK.format("[0.5, 0.3, 0.2]"))
    notebook(subs / "carol" / "01_attention_as_soft_lookup.ipynb",
             "raise ValueError('my weights are not ready')", CHECK.format(right))
    notebook(subs / "dave" / "01_attention_as_soft_lookup.ipynb", "while True:\n    pass",
             CHECK.format(right))
    canary = base / "canary.txt"
    canary.write_text("still here")
    other = subs / "alice" / "01_attention_as_soft_lookup.ipynb"
    notebook(subs / "eve" / "01_attention_as_soft_lookup.ipynb",
             PROBE.format(other=str(other), canary=str(canary)))
    rows = grade.grade(subs, out, timeout=25)
    return rows, out, canary


def rows_of(rows, student):
    return {r["exercise"]: r for r in rows if r["student"] == student}


def test_correct_and_wrong_answers(graded):
    rows, _, _ = graded
    alice, bob = rows_of(rows, "alice"), rows_of(rows, "bob")
    assert alice["(notebook)"]["passed"] and alice["(notebook)"]["message"] == "ran to the end"
    assert alice["check_soft_lookup"]["passed"]
    assert alice["check_soft_lookup"]["message"].startswith("Correct!")
    assert bob["(notebook)"]["passed"]
    assert not bob["check_soft_lookup"]["passed"]
    assert "expected [0.576, 0.284, 0.14]" in bob["check_soft_lookup"]["message"]


def test_a_notebook_that_raises_is_reported_and_graded_on(graded):
    carol = rows_of(graded[0], "carol")
    assert not carol["(notebook)"]["passed"]
    assert "cell 1: ValueError: my weights are not ready" in carol["(notebook)"]["message"]
    assert carol["check_soft_lookup"]["passed"]          # the cells after it still ran


def test_a_notebook_that_never_stops_is_stopped(graded):
    dave = rows_of(graded[0], "dave")
    assert set(dave) == {"(notebook)"}
    assert not dave["(notebook)"]["passed"]
    assert "did not finish" in dave["(notebook)"]["message"]
    assert 25 <= float(dave["(notebook)"]["seconds"]) < 60


@pytest.mark.skipif(not grade.sandbox_available(), reason="needs Linux namespaces (unshare)")
def test_a_notebook_cannot_read_others_reach_the_network_or_delete_files(graded):
    rows, _, canary = graded
    probe = json.loads(rows_of(rows, "eve")["probe"]["message"])
    assert probe["other"] == "FileNotFoundError"         # the submissions folder is hidden
    assert probe["network"] == "OSError"                 # no route: only a loopback device
    assert probe["delete"] == "OSError"                  # read-only file system
    assert canary.read_text() == "still here"


def test_tables(graded):
    rows, out, _ = graded
    with open(out / "grades.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["student"] for r in table] == [r["student"] for r in rows]
    assert list(table[0]) == grade.FIELDS
    assert len({r["student"] for r in table}) == 5
    md = (out / "grades.md").read_text()
    assert md.count("\n| ") == len(rows) + 1             # the header and one line per row
    assert "| dave | 01_attention_as_soft_lookup | (notebook) | no | did not finish" in md
