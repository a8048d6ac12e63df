"""Every checker call in the exercise tests is also logged and re-checked as the grader would.

For the modules ``test_exercises*.py`` the grade log is switched on; after each test every logged
answer (right, wrong, unfilled) is handed to :func:`attnlab.exercises.regrade`, outside the call
that made it, and must get the same verdict and the same message. This is what lets the grader
trust answers and not verdicts.
"""
import json

import pytest


@pytest.fixture(autouse=True)
def _regrade_every_logged_answer(request, tmp_path, monkeypatch):
    if not request.module.__name__.startswith("test_exercises"):
        yield
        return
    log = tmp_path / "grade_log.jsonl"
    monkeypatch.setenv("ATTNLAB_GRADE_LOG", str(log))
    yield
    monkeypatch.delenv("ATTNLAB_GRADE_LOG")
    from attnlab.exercises import regrade
    for line in log.read_text().splitlines() if log.exists() else []:
        record = json.loads(line)
        again = regrade(record)
        assert (again.ok, again.done, str(again)) == (record["ok"], record["done"], record["message"]), \
            f"{record['exercise']}: the grader would say {str(again)!r}, the notebook said {record['message']!r}"
