"""The grader (tools/grade.py) on the made-up class of tools/demo_class.py.

Eight students hand in chapter 2's checked exercises: right, wrong, raising before the answers,
never stopping, killing its kernel, untouched stubs, no answers at all, and a forged verdict with
an attempt to read another student's work, reach the network and delete a file.
"""
import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grade, demo_class = _load("grade"), _load("demo_class")
LIMIT = 60  # seconds per notebook: ample for these, even on a busy machine
SCALE, BUILD = "ex-self-attention-scale", "ex-self-attention-build"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs, out = base / "submissions", base / "grades"
    canary = demo_class.make_class(subs, base / "canary.txt")
    rows = grade.grade(subs, out, timeout=LIMIT)
    return rows, out, canary


def rows_of(rows, student):
    return {r["exercise"]: r for r in rows if r["student"] == student}


def test_right_and_wrong_answers(graded):
    alice, bob = rows_of(graded[0], "alice"), rows_of(graded[0], "bob")
    assert alice["(notebook)"]["passed"] and alice["(notebook)"]["message"] == "ran to the end"
    assert set(alice) == {"(notebook)", SCALE, BUILD}
    assert alice[SCALE]["passed"] and alice[SCALE]["message"].startswith("Correct!")
    assert alice[BUILD]["passed"] and "matches F.scaled_dot_product_attention" in alice[BUILD]["message"]
    assert bob["(notebook)"]["passed"]
    assert not bob[SCALE]["passed"] and "each product q_i k_i has variance" in bob[SCALE]["message"]
    assert not bob[BUILD]["passed"] and "not scaled" in bob[BUILD]["message"]


def test_a_notebook_that_raises_is_reported_and_graded_on(graded):
    carol = rows_of(graded[0], "carol")
    assert not carol["(notebook)"]["passed"]
    assert "cell 1: ValueError: my weights are not ready" in carol["(notebook)"]["message"]
    assert carol[SCALE]["passed"] and carol[BUILD]["passed"]   # the cells after it still ran


def test_a_notebook_that_never_stops_is_stopped(graded):
    dave = rows_of(graded[0], "dave")
    assert not dave["(notebook)"]["passed"]
    assert "did not finish" in dave["(notebook)"]["message"]
    assert LIMIT <= float(dave["(notebook)"]["seconds"]) < LIMIT + 30
    assert {dave[SCALE]["message"], dave[BUILD]["message"]} == \
        {"not attempted: the checker was never called"}


def test_a_notebook_that_kills_its_kernel_is_reported_and_graded_on(graded):
    oscar = rows_of(graded[0], "oscar")
    assert not oscar["(notebook)"]["passed"]
    assert oscar["(notebook)"]["message"].startswith("crashed: ")
    assert oscar[SCALE]["passed"] and oscar[BUILD]["passed"]   # answered before the crash


def test_untouched_stubs_are_not_done_and_missing_answers_not_attempted(graded):
    erin, frank = rows_of(graded[0], "erin"), rows_of(graded[0], "frank")
    assert erin["(notebook)"]["passed"]                        # the student edition runs
    assert erin[SCALE]["message"].startswith("Not done yet.")
    assert erin[BUILD]["message"] == ("Not done yet. Your function still raises "
                                      "NotImplementedError: fill in the stub.")
    assert not frank[SCALE]["passed"] and not frank[BUILD]["passed"]
    assert frank[BUILD]["message"] == "not attempted: the checker was never called"


def test_a_forged_verdict_is_checked_again(graded):
    mallory = rows_of(graded[0], "mallory")
    assert not mallory[SCALE]["passed"]                        # the log said "ok": True
    assert "expected 0.015625, got 0.5" in mallory[SCALE]["message"]
    assert mallory[SCALE]["message"].endswith("(the notebook printed a different verdict)")


@pytest.mark.skipif(not grade.sandbox_available(), reason="needs Linux namespaces (unshare)")
def test_a_notebook_cannot_read_others_reach_the_network_or_delete_files(graded):
    rows, _, canary = graded
    message = rows_of(rows, "mallory")["probe"]["message"]
    probe = json.loads(message.removeprefix("unknown exercise: "))
    assert probe["other"] == "FileNotFoundError"         # the submissions folder is hidden
    assert probe["network"] == "OSError"                 # no route: only a loopback device
    assert probe["delete"] == "OSError"                  # read-only file system
    assert canary.read_text() == "still here"


def test_tables(graded):
    rows, out, _ = graded
    with open(out / "grades.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["student"], r["exercise"]) for r in table] == \
        [(r["student"], r["exercise"]) for r in rows]
    assert list(table[0]) == grade.FIELDS
    assert len({r["student"] for r in table}) == 8
    md = (out / "grades.md").read_text()
    assert md.count("\n| ") == len(rows) + 1             # the header and one line per row
    assert "| dave | 02_self_attention | (notebook) | no | did not finish: stopped after the time limit of 60 s" in md
