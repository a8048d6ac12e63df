"""Glued numbers and asserted learning targets: recorded, checked, and silent in the page."""
import json

import pytest
import torch

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


def test_target_records_its_claim_and_margin_over_the_best_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    target("iou", 0.8, 0.65, claim="The head separates the digits.",
           baselines={"all ink": 0.55, "at initialisation": 0.3})
    target("err", 0.1, 0.3, "<=", baselines={"copy the input": 0.5, "prior": 0.9})
    target("plain", 0.7, 0.6)                              # old calls keep working
    a, b, c = rows(tmp_path / "r.jsonl")
    assert a["claim"] == "The head separates the digits."
    assert (a["best_baseline"], a["best_baseline_value"]) == ("all ink", 0.55)
    assert a["margin_over_baseline"] == pytest.approx(0.25)
    assert a["baselines"] == {"all ink": 0.55, "at initialisation": 0.3}
    assert (b["best_baseline"], b["margin_over_baseline"]) == ("copy the input", pytest.approx(0.4))
    assert "claim" not in c and "best_baseline" not in c


def test_a_threshold_that_a_baseline_meets_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    with pytest.raises(ValueError, match="met by the baseline.*all ink"):
        target("iou", 0.8, 0.5, baselines={"all ink": 0.55})
    with pytest.raises(ValueError, match="met by the baseline.*at init"):
        target("iou", 0.8, 0.5, baselines={"at init": 0.5})    # a tie is not beaten
    with pytest.raises(ValueError, match="met by"):
        target("err", 0.1, 0.3, "<=", baselines={"prior": 0.2})
    with pytest.raises(TypeError, match="claim"):
        target("iou", 0.8, 0.6, claim="  ")
    assert not (tmp_path / "r.jsonl").exists()                 # nothing recorded for a refusal


@pytest.mark.parametrize("call, error, words", [
    (lambda: glue(3, 0.5), TypeError, "name must be a str"),
    (lambda: glue("ch1 acc", 0.5), ValueError, "letters, digits"),
    (lambda: glue("a", torch.ones(2)), ValueError, "value must hold one number, got 2"),
    (lambda: glue("a", 0.5, record="yes"), TypeError, "record must be True or False"),
    (lambda: target("a", [0.5], 0.4), TypeError, "value must be a number"),
    (lambda: target("a", True, 0.4), TypeError, "value must be a number"),
    (lambda: target("a", "0.5", 0.4), TypeError, "value must be a number"),
    (lambda: target("a", torch.zeros(3), 0.4), ValueError, "value must hold one number, got 3"),
    (lambda: target("a", 0.5, float("nan")), ValueError, "threshold must be a finite number"),
    (lambda: target("a", 0.5, None), TypeError, "threshold must be a number"),
    (lambda: target("a b", 0.5, 0.4), ValueError, "letters, digits"),
])
def test_bad_input_says_what_is_wrong(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_one_element_tensors_and_arrays_are_numbers(tmp_path, monkeypatch):
    import numpy as np
    monkeypatch.setenv("ATTNLAB_RECORD", str(tmp_path / "r.jsonl"))
    glue("t", torch.tensor([0.25]))
    target("u", np.float32(0.75), 0.5)
    assert [r["value"] for r in rows(tmp_path / "r.jsonl")] == [0.25, 0.75]
