"""Glued numbers and asserted learning targets: recorded, checked, and silent in the page."""
import json

import pytest

from attnlab.report import glue, target


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_target_records_and_passes_with_its_margin(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    monkeypatch.setenv("ATTNLAB_NOTEBOOK", "nb")
    assert target("acc", 0.75, 0.6) is None            # nothing to display under the cell
    assert target("loss", 0.1, 0.2, "<=") is None
    got = rows(tmp_path / "r.jsonl")
    assert [(r["kind"], r["name"], r["op"]) for r in got] == [("target", "acc", ">="),
                                                               ("target", "loss", "<=")]
    assert got[0]["margin"] == pytest.approx(0.15) and got[1]["margin"] == pytest.approx(0.1)


def test_target_missed_says_by_how_much(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    with pytest.raises(AssertionError, match=r"'acc' missed: 0.55 >= 0.6 .*margin -0.05"):
        target("acc", 0.55, 0.6)
    with pytest.raises(AssertionError, match="missed"):
        target("acc", float("nan"), 0.6)
    with pytest.raises(ValueError, match="op must be"):
        target("acc", 0.7, 0.6, ">")


def test_glue_records_numbers_unless_told_and_returns_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    assert glue("a", 3) is None
    assert glue("b", 2.5, record=False) is None
    assert glue("c", True) is None
    assert [(r["kind"], r["name"], r["value"]) for r in rows(tmp_path / "r.jsonl")] == [
        ("result", "a", 3.0)]


def _fake_kernel(monkeypatch):
    import IPython
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())


def test_glue_in_a_readers_kernel_without_myst_nb_only_records(tmp_path, monkeypatch):
    """Colab and a plain Jupyter have no myst-nb (it brings Sphinx): glue must not need it."""
    import sys
    _fake_kernel(monkeypatch)
    monkeypatch.setitem(sys.modules, "myst_nb", None)   # `import myst_nb` now raises ImportError
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    assert glue("a", 0.5) is None
    assert target("t", 0.7, 0.6) is None
    assert [r["name"] for r in rows(tmp_path / "r.jsonl")] == ["a", "t"]


def test_glue_in_the_book_build_hands_the_value_to_myst_nb(monkeypatch):
    import sys
    import types
    _fake_kernel(monkeypatch)
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    glue("a", 0.5)
    assert calls == [("a", 0.5, False)]
