"""Every checker call in the exercise tests is also graded as the grader would, and must agree.

For the modules ``test_exercises*.py`` the grade log is switched on, so every checker call appends
the answer it was given (and its verdict). After each test every logged answer that used no
setting (the grader ignores settings such as a tolerance or the exercise's own data) is graded
again with :func:`attnlab.exercises.regrade` the way the grader's checking process does it:
under a seed the notebook never saw (fresh inputs for build tasks), with every function going
through cloudpickle and every input and output through the grader's wire format. It must pass,
fail or wait ("not done") exactly as the learner's call did. Only the sandboxes are left out
(``tests/test_grade.py`` covers them).
"""
import base64
import json
import os

import pytest

# ATTNLAB_GRADING_SEEDS="1 2 3" grades every answer under each of these seeds (a sweep for
# checkers whose verdict depends on the seed); by default one seed.
GRADING_SEEDS = [int(s) for s in os.environ.get("ATTNLAB_GRADING_SEEDS", "20240917").split()]


def _direct(data, args, kwargs):
    """What tools/grade_runner.py answers, minus the sandbox: run the pickled function here."""
    import cloudpickle

    from attnlab.exercises import _wire
    if not data.get("__function__"):
        return {"raised": "NotGradable", "message": data.get("error", "no function")}
    fn = cloudpickle.loads(base64.b64decode(data["__function__"]))
    args, kwargs = (_wire.decode(json.loads(json.dumps(x, allow_nan=False)))
                    for x in (args, kwargs))
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported like the runner does
        return {"raised": type(e).__name__, "message": str(e)[:300]}
    return {"result": json.loads(json.dumps(_wire.encode(result), allow_nan=False))}


def grade_record(record, seed=GRADING_SEEDS[0]):
    """The grader's verdict on one logged record (decoded from JSON, functions as stand-ins)."""
    from attnlab.exercises import _core, _wire, regrade
    answers = {name: _wire.decode(value, lambda d: _core.StandIn(d, _direct))
               for name, value in record["answer"].items()}
    return regrade(record["exercise"], answers, seed)


@pytest.fixture(autouse=True)
def _grade_every_logged_answer(request, tmp_path, monkeypatch):
    if not request.module.__name__.startswith("test_exercises"):
        yield
        return
    log = tmp_path / "grade_log.jsonl"
    monkeypatch.setenv("ATTNLAB_GRADE_LOG", str(log))
    monkeypatch.delenv("ATTNLAB_GRADING", raising=False)
    yield
    monkeypatch.delenv("ATTNLAB_GRADE_LOG")
    for line in log.read_text().splitlines() if log.exists() else []:
        record = json.loads(line)
        assert "answer" in record, f"{record['exercise']}: the answer was not logged: {record}"
        if record["settings"]:
            continue
        for seed in GRADING_SEEDS:
            again = grade_record(record, seed)
            assert (again.ok, again.done) == (record["ok"], record["done"]), \
                f"{record['exercise']} (seed {seed}): the grader would say {str(again)!r}, the " \
                f"notebook said ok={record['ok']}, done={record['done']}"
