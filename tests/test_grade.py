"""The grader (tools/grade.py) on the made-up class of tools/demo_class.py, red team included.

An ordinary class hands in chapter 2: right, wrong, raising before the answers, never stopping,
killing its kernel, untouched stubs, no answers at all. The red team (see tools/demo_class.py)
sabotages the next student, leaves a daemon, probes the sandbox, forges and floods the grade
log and the result file, calls the reference, feeds the checker its own data, replays the
checker's fixed cases, hands in links, pipes and oversized files, and names folders like
formulas and HTML. Every honest student must keep the right grade, every hostile one get exactly
what its answers earn, and the tables must stay tables. Most of it needs bubblewrap
(``make sandbox``); without it the tests that need isolation are skipped.
"""
import base64
import csv
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grade, demo_class, grade_check = _load("grade"), _load("demo_class"), _load("grade_check")
import grade_sandbox  # noqa: E402

LIMIT = 45  # seconds per notebook: ample for these (each runs in under 15 s on a busy machine)
SCALE, BUILD = "ex-self-attention-scale", "ex-self-attention-build"
_sandbox = grade_sandbox.Sandbox()
ISOLATED = _sandbox.isolated
_sandbox.close()
needs_bwrap = pytest.mark.skipif(not ISOLATED, reason="needs bubblewrap (make sandbox)")
WITHHELD = "When grading, the checker's hints and expected values are not shown"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs, out = base / "submissions", base / "grades"
    canary = demo_class.make_class(subs, base / "canary.txt", base / "agent.sock")
    if not ISOLATED:            # without a PID namespace his daemon would kill the next kernels
        shutil.rmtree(subs / "aaron")
    agent = socket.socket(socket.AF_UNIX)          # an SSH agent the sandbox must not reach
    agent.bind(str(base / "agent.sock"))
    agent.listen(1)
    saved = {k: os.environ.get(k) for k in ("GRADER_CANARY_TOKEN", "SSH_AUTH_SOCK")}
    os.environ.update(GRADER_CANARY_TOKEN="s3cret", SSH_AUTH_SOCK=str(base / "agent.sock"))
    try:
        rows = grade.grade(subs, out, timeout=LIMIT)
    finally:
        agent.close()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.update({k: v})
    return rows, out, canary


def rows_of(rows, student):
    return {r["exercise"]: r for r in rows if r["student"] == student}


# --- the ordinary class --------------------------------------------------------------------

def test_right_and_wrong_answers(graded):
    alice, bob = rows_of(graded[0], "alice"), rows_of(graded[0], "bob")
    assert alice["(notebook)"]["passed"] and alice["(notebook)"]["message"] == "ran to the end"
    assert set(alice) == {"(notebook)", SCALE, BUILD}
    assert alice[SCALE]["passed"] and alice[SCALE]["message"].startswith("Correct!")
    assert alice[BUILD]["passed"]
    assert "matches F.scaled_dot_product_attention" in alice[BUILD]["message"]
    assert (alice[SCALE]["points"], alice[BUILD]["points"]) == (1, 1)
    assert bob["(notebook)"]["passed"]
    assert not bob[SCALE]["passed"] and bob[SCALE]["points"] == 0
    assert "factor = 0.0625" in bob[SCALE]["message"] and WITHHELD in bob[SCALE]["message"]
    assert "0.015625" not in bob[SCALE]["message"]            # the expected value is withheld
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
    assert LIMIT <= float(dave["(notebook)"]["seconds"]) < LIMIT + 20
    assert {dave[SCALE]["message"], dave[BUILD]["message"]} == {grade.NOT_ATTEMPTED}


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
    assert frank[BUILD]["message"] == grade.NOT_ATTEMPTED


# --- the red team ----------------------------------------------------------------------------

@needs_bwrap
def test_a_saboteur_gets_his_own_grade_and_cannot_touch_the_next_student(graded):
    aaron, alice = rows_of(graded[0], "aaron"), rows_of(graded[0], "alice")
    assert aaron[SCALE]["passed"]                              # his factor is right
    assert not aaron[BUILD]["passed"]                          # his attention is the reference
    assert "ReferenceUnavailable: torch.nn.functional.scaled_dot_product_attention" \
        in aaron[BUILD]["message"]
    assert alice[SCALE]["passed"] and alice[BUILD]["passed"]   # graded right after him
    alive = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            alive += [comm] if comm.read_text().strip() == "aaron-daemon" else []
        except OSError:
            pass
    assert not alive, "aaron's daemon outlived his run"


@needs_bwrap
def test_the_sandbox_hides_the_machine(graded):
    rows, _, canary = graded
    message = rows_of(rows, "aaron")["(notebook)"]["message"]
    probe = json.loads(message.split("RuntimeError: probe ", 1)[1])
    assert probe["env"] == []                    # no variable of the grader's environment
    assert probe["passwd"] == "student"          # a passwd of the sandbox's own
    assert probe["other"] == probe["canary"] == probe["delete"] == "FileNotFoundError"
    assert probe["write"] == "OSError"           # read-only file system
    assert probe["agent"] == "FileNotFoundError"  # no Unix socket of the machine (SSH agent)
    assert probe["net"] == "OSError"             # no route: only a loopback device
    assert probe["grader"] == 0                  # no process outside the sandbox is visible
    assert canary.read_text() == "still here"


def test_forged_and_flooded_logs_change_nothing_but_her_own_rows(graded):
    mallory = rows_of(graded[0], "mallory")
    assert set(mallory) == {"(notebook)", SCALE, BUILD}       # no forged label became a row
    assert not mallory[SCALE]["passed"] and "factor = 0.5" in mallory[SCALE]["message"]
    assert not mallory[BUILD]["passed"] and "could not be read" in mallory[BUILD]["message"]
    notebook = mallory["(notebook)"]["message"]
    assert not mallory["(notebook)"]["passed"] and "without a valid report" in notebook
    assert "pwned" not in notebook and "<script>" not in notebook
    assert "only the first 2,000 lines" in notebook and "other chapters were ignored" in notebook


@needs_bwrap
def test_passing_without_solving_fails(graded):
    eve = rows_of(graded[0], "eve")
    assert not any(r["passed"] for r in eve.values() if r["exercise"] != "(notebook)")
    assert "weights = a list of 3 entries" in eve["ex-soft-lookup-by-hand"]["message"]
    assert "shape (5,)" in eve["ex-soft-lookup-nearest"]["message"]     # her data is ignored
    assert "off by up to" in eve["ex-soft-lookup-gradient"]["message"]  # fresh cases
    assert "needs the module 'attnlab'" in eve["ex-soft-lookup-build"]["message"]


def test_the_same_tricks_pass_in_the_learners_own_notebook(tmp_path):
    """What eve does would pass if the grader trusted the notebook's own checks."""
    out = subprocess.run([sys.executable, "-c", demo_class.EVE], capture_output=True, text=True,
                         cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("ATTNLAB_")}, timeout=300)
    assert out.stdout.count("Correct!") == 4, out.stdout + out.stderr


def test_links_pipes_folders_and_odd_names_are_rows(graded):
    rows = graded[0]
    sybil = {r["notebook"]: r["message"] for r in rows
             if r["student"] == "sybil" and r["exercise"] == "(notebook)"}
    odd = "not graded: the notebook is not a regular file"
    assert sybil == {"01_attention_as_soft_lookup": f"{odd} (a symbolic link)",
                     "02_self_attention": f"{odd} (a symbolic link)",
                     "03_multi_head_attention": f"{odd} (a named pipe)",
                     "04_channel_attention": f"{odd} (a folder)",
                     "05_spatial_attention": f"{odd} (a symbolic link)",
                     "my_answers": sybil["my_answers"]}
    assert sybil["my_answers"].startswith("not graded: not a chapter of the book")
    assert not any(r["passed"] for r in rows if r["student"] == "sybil")
    assert rows_of(rows, "zed")["(student)"]["message"].startswith("not graded: a symbolic link")
    assert "over 20,971,520 bytes" in rows_of(rows, "huge")["(notebook)"]["message"]
    assert rows_of(rows, demo_class.FORMULA)["(student)"]["message"].startswith(
        "no notebook handed in")
    assert rows_of(rows, ascii(demo_class.HTML))["(student)"]["message"].startswith(
        "not graded: the folder name")                  # a line break: not shown as it is


def test_tables(graded):
    rows, out, _ = graded
    with open(out / "grades.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == grade.FIELDS
    assert len(table) == len(rows)
    cells = [c for r in table for c in r.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert f"'{demo_class.FORMULA}" in {r["student"] for r in table}
    assert all(r["points"] in ("0", "1") for r in table if not r["exercise"].startswith("("))
    assert all(r["points"] == "" for r in table if r["exercise"].startswith("("))
    md = (out / "grades.md").read_text()
    assert md.count("\n| ") == len(rows) + 1             # the header and one line per row
    assert "<img" not in md and "<script" not in md and "\n| forged" not in md
    assert "| dave | 02\\_self\\_attention | (notebook) | no |  | did not finish: stopped after " \
           f"the time limit of {LIMIT} s" in md
    with open(out / "grades-moodle.csv", newline="") as f:
        moodle = list(csv.reader(f))
    folders = sorted(p.name for p in (out.parent / "submissions").iterdir() if p.is_dir()
                     and not p.is_symlink() and p.name != demo_class.HTML)
    assert moodle[0][0] == "username" and moodle[0][-1] == "total"
    assert sorted(r[0] for r in moodle[1:]) == sorted(grade.csv_cell(f) for f in folders)
    alice = next(r for r in moodle if r[0] == "alice")
    assert alice[moodle[0].index(f"02_self_attention {BUILD}")] == "1" and alice[-1] == "2"


# --- the parts, without notebooks ------------------------------------------------------------

def test_cells_are_neutralised():
    assert grade.csv_cell("=1+1") == "'=1+1" and grade.csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert grade.csv_cell("-2") == "'-2" and grade.csv_cell("+2") == "'+2"
    assert grade.csv_cell("\tx") == " x" and grade.csv_cell("a\nb") == "a b"    # no control
    assert grade.csv_cell("\r=1") == "' =1"                                        # characters
    assert len(grade.csv_cell("x" * 10_000)) == 2000
    assert grade.md_cell("a|b\n<i>`c`</i>[d](e)") == r"a\|b &lt;i&gt;\`c\`&lt;/i&gt;\[d\](e)"
    assert grade.md_cell("\udcff") == "\ufffd"                  # broken UTF-8 in a file name


def test_files_a_student_controls_are_read_with_care(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 100)
    (tmp_path / "link").symlink_to(tmp_path / "big")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    assert grade_sandbox.read_capped(tmp_path / "big", 10) == (b"x" * 10, "over 10 bytes")
    assert grade_sandbox.read_capped(tmp_path / "link", 10)[1] == \
        "not a regular file (a symbolic link)"
    assert grade_sandbox.read_capped(tmp_path / "fifo", 10)[1] == \
        "not a regular file (a named pipe)"
    assert grade_sandbox.read_capped(tmp_path / "dir", 10)[1] == "not a regular file (a folder)"
    assert grade_sandbox.read_capped(tmp_path / "none", 10) == (None, "missing")


def test_the_log_is_read_with_limits():
    scale = {"exercise": SCALE, "answer": {"factor": 0.015625}}
    lines = [b"[1, 2]", b"\xff\xfe", b"{broken", b"[" * 100_000, json.dumps(scale).encode(),
             json.dumps({"exercise": "ex-soft-lookup-build", "answer": {}}).encode(),
             json.dumps({**scale, "answer": {"factor": 0.5}}).encode()]
    records, notes = grade_check.parse(b"\n".join(lines), [SCALE, BUILD], truncated=False)
    assert records == {SCALE: {**scale, "answer": {"factor": 0.5}}}      # the last one counts
    assert notes == ["4 unreadable line(s) of the grade log were skipped",
                     "1 answer(s) to exercises of other chapters were ignored"]
    start = time.monotonic()
    records, notes = grade_check.parse(b"{}\n" * 50_000, [SCALE], truncated=True)
    assert time.monotonic() - start < 5 and not records
    assert notes[:2] == ["the grade log was cut at its size limit",
                         "only the first 2,000 lines of the grade log were read"]


def test_settings_are_ignored_and_cost_nothing():
    from conftest import grade_record
    start = time.monotonic()
    loose = grade_record({"exercise": SCALE, "answer": {"factor": 0.5, "rtol": 1e9,
                                                         "d_k": 10**12}})
    huge = grade_record({"exercise": "ex-eff-crossover", "answer": {"n": 65, "d": 10**12}})
    assert not loose.ok and huge.ok and time.monotonic() - start < 10


@needs_bwrap
def test_a_function_runs_alone_without_its_reference(tmp_path):
    """Each submitted function runs in a sandbox of its own, where attnlab is missing and the
    reference raises under any of its names, within a time budget."""
    import cloudpickle

    def data(fn):
        return {"__function__": base64.b64encode(cloudpickle.dumps(fn)).decode(), "name": "f"}

    def alias(q, k, v):
        import torch
        return torch._C._VariableFunctions._scaled_dot_product_attention_math(q, k, v)[0]

    def flex(q, k, v):
        from torch.nn.attention.flex_attention import flex_attention
        return flex_attention(q[None], k[None], v[None])[0]

    def autograd(q, k, v):
        q = q.clone().requires_grad_(True)
        (q * k).sum().backward()
        return q.grad

    def forever(q, k, v):
        while True:
            pass

    from attnlab.exercises import _core, _wire
    sandbox = grade_sandbox.Sandbox()
    checker = grade.Checker(sandbox, grade_sandbox.Limits(), function_timeout=3)
    import torch
    args = _wire.encode([torch.ones(1, 2, 2)] * 3)
    for fn, forbid, kind in ((alias, _core.ATTENTION, "ReferenceUnavailable"),
                             (flex, _core.ATTENTION, "ReferenceUnavailable"),
                             (autograd, _core.AUTOGRAD, "ReferenceUnavailable"),
                             (forever, (), "TimeoutError")):
        runner = grade.Runner(checker, data(fn), list(forbid), time.monotonic() + 120)
        try:
            reply = json.loads(runner.call(args, _wire.encode({})))
        finally:
            runner.stop()
        assert reply["raised"] == kind, reply
    sandbox.close()


def test_a_formula_that_looks_up_the_usual_points_fails():
    """Formulas are also checked at points drawn at grading time: a table of the usual points,
    which passes in the learner's notebook, does not pass the grader."""
    import cloudpickle
    from conftest import grade_record

    from attnlab.exercises import check_mha_params
    from attnlab.exercises.ch03 import _mha_params
    table = {(D, h): _mha_params(D, h) for D in (16, 64, 512) for h in (1, 2, 4, 8)}

    def lookup(D, h):
        return table.get((D, h), 0)

    assert check_mha_params(lookup).ok
    data = {"__function__": base64.b64encode(cloudpickle.dumps(lookup)).decode(), "name": "f"}
    assert not grade_record({"exercise": "ex-mha-params", "answer": {"answer": data}}).ok


def test_a_function_that_switches_off_the_guards_is_not_counted():
    """Code that could get around the function sandbox's guards is named in the pickle: such a
    function is not counted, even where it passes (here it runs without the guards)."""
    import cloudpickle
    from conftest import grade_record

    def sneaky(q, k, v, mask=None, is_causal=False):
        import torch
        import torch.nn.functional as F
        with torch._C.DisableTorchFunction():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

    data = {"__function__": base64.b64encode(cloudpickle.dumps(sneaky)).decode(), "name": "f"}
    verdict = grade_record({"exercise": BUILD, "answer": {"fn": data}})
    assert not verdict.ok and "DisableTorchFunction" in verdict and "not counted" in verdict


@needs_bwrap
def test_forged_records_through_the_real_check():
    """The checking process and the functions' sandboxes on a log written by hand, for chapter
    13: a function that reads the expected value off the checker's frame (which passes in the
    learner's own notebook), one that uses autograd where a gradient must be derived, and one
    that calls the library's reference."""
    import cloudpickle

    from attnlab.exercises import check_masked_bce
    labels = grade.chapters()["13_dense_attention"]

    def peek(*args):
        import sys
        frame = sys._getframe(1)
        while frame is not None:
            if "expected" in frame.f_locals:
                return frame.f_locals["expected"]
            frame = frame.f_back
        raise LookupError("no expected value in sight")

    def autograd(s, c, m, y):
        import torch
        s = s.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(s, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, s)
        return grad, grad

    def reference(logits, masks, classes):
        from attnlab.practice import decoupled_mask_loss
        return decoupled_mask_loss(logits, masks, classes)

    assert check_masked_bce(peek).ok                               # in the learner's notebook
    records = [{"exercise": label, "answer": {"fn": {
        "__function__": base64.b64encode(cloudpickle.dumps(fn)).decode(), "name": "f"}}}
        for label, fn in (("ex-dense-masked-bce-build", peek), ("ex-dense-gradient", autograd),
                          ("ex-dense-decoupled-build", reference))]
    grader = grade.Grader(LIMIT, 30, grade_sandbox.Limits())
    try:
        verdicts, notes = grader.check(labels, "\n".join(map(json.dumps, records)).encode(), False)
    finally:
        grader.close()
    assert not any(v["passed"] for v in verdicts.values()) and not notes
    assert "LookupError: no expected value in sight" in \
        verdicts["ex-dense-masked-bce-build"]["message"]
    assert "ReferenceUnavailable" in verdicts["ex-dense-gradient"]["message"]
    assert "needs the module 'attnlab'" in verdicts["ex-dense-decoupled-build"]["message"]


def test_one_failing_notebook_is_one_row(tmp_path, monkeypatch):
    """An error of the grader's own on one notebook becomes a row; the others are graded."""
    for student in ("ann", "ben"):
        (tmp_path / "subs" / student).mkdir(parents=True)
        (tmp_path / "subs" / student / "notes.ipynb").write_text("{}")

    def explode(self, student, path):
        if student == "ann":
            raise RuntimeError("boom")
        return [{"student": student, "notebook": path.stem, "exercise": "(notebook)",
                 "passed": False, "points": "", "seconds": "", "message": "fine"}]
    monkeypatch.setattr(grade.Grader, "notebook", explode)
    rows = grade.grade(tmp_path / "subs", tmp_path / "out", timeout=5, use_bwrap=False)
    assert [(r["student"], r["message"]) for r in rows] == [
        ("ann", "the grader failed on this notebook (RuntimeError: boom)"), ("ben", "fine")]
    assert (tmp_path / "out" / "grades.csv").exists()


@needs_bwrap
@pytest.mark.skipif(os.environ.get("ATTNLAB_GRADE_BOOK") != "1",
                    reason="slow (about 3 minutes): set ATTNLAB_GRADE_BOOK=1")
def test_the_books_own_solutions_pass_the_grader(tmp_path):
    """Every function the book gives as a solution (each build task's, each formula) passes the
    grader's real path: recorded in a sandboxed kernel, checked on fresh inputs, run in a
    sandbox without attnlab (but the modules its exercise allows) and without its reference."""
    import ast

    import nbformat
    folder = tmp_path / "subs" / "book"
    folder.mkdir(parents=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        cells = [code[0].source, code[1].source]                  # the setup and the imports
        for c in code:
            tags, body = c.metadata.get("tags", []), ast.parse(c.source).body
            if "stub" in tags:                                    # the stub's imports
                cells.append("\n".join(ast.unparse(n) for n in body
                                       if isinstance(n, (ast.Import, ast.ImportFrom))))
            if "solution" in tags:                                # definitions and the check
                cells.append("\n\n".join(ast.unparse(n) for n in body if isinstance(
                    n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
                    or isinstance(n, ast.Expr) and "check_" in ast.unparse(n)))
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells],
                                                metadata=nb.metadata), folder / path.name)
    rows = grade.grade(tmp_path / "subs", tmp_path / "out", timeout=300)
    functions = {label for label, wrapper in grade.REGISTRY.items()
                 if "fn" in wrapper.answers or label in {
                     "ex-mha-params", "ex-channel-se-count", "ex-channel-eca-kernel",
                     "ex-cost-video", "ex-hard-sigma", "ex-resatt-gradient", "ex-c2f-params"}}
    graded = {r["exercise"]: r for r in rows if r["exercise"] in functions}
    assert set(graded) == functions
    assert not [(k, r["message"]) for k, r in graded.items() if not r["passed"]]


SURROGATE = '''
from attnlab.exercises import check_sdpa


def my_attention(q, k, v, mask=None, is_causal=False):
    raise RuntimeError("bad " + chr(0xD800) + " text")


print(check_sdpa(my_attention))
raise RuntimeError("and the notebook " + chr(0xDC80))
'''


@needs_bwrap
def test_text_with_lone_surrogates_is_a_row_and_the_tables_are_written(tmp_path):
    """A student whose function raises with a lone surrogate in its message (and whose notebook
    does too) gets rows, the student after her is graded, and all three tables are written,
    replacing those of an earlier run."""
    subs, out = tmp_path / "subs", tmp_path / "out"
    demo_class._notebook(subs / "ann" / "02_self_attention.ipynb", [SURROGATE])
    demo_class._notebook(subs / "ben" / "02_self_attention.ipynb", [
        demo_class.RIGHT.format(scale_bug="", factor="1 / (4 * 256 ** 0.5)")])
    out.mkdir()
    for name in ("grades.csv", "grades.md", "grades-moodle.csv"):
        (out / name).write_text("stale")
    rows = grade.grade(subs, out, timeout=LIMIT)
    ann, ben = rows_of(rows, "ann"), rows_of(rows, "ben")
    assert ann[BUILD]["passed"] is False and "\ufffd" in ann[BUILD]["message"], ann
    assert ben[BUILD]["passed"] is True and ben[SCALE]["passed"] is True, ben
    for name in ("grades.csv", "grades.md", "grades-moodle.csv"):
        text = (out / name).read_text(encoding="utf-8")
        assert "stale" not in text and "ann" in text and "ben" in text
    assert not [p for p in out.iterdir() if p.name.startswith(".")]     # no temporary files


def test_a_row_that_cannot_be_written_is_a_row_and_old_tables_go(tmp_path, monkeypatch):
    """Surrogates anywhere in a row (a folder name, a forged detail) are replaced once; a row
    that cannot be built says so; tables of an earlier run never survive a failed run."""
    for student in ("ann", "ben", "cy"):
        (tmp_path / "subs" / student).mkdir(parents=True)
        (tmp_path / "subs" / student / "notes.ipynb").write_text("{}")

    class Unprintable:
        def __str__(self):
            raise ValueError("no")

    def fake(self, student, path):
        message = {"ann": "forged " + chr(0xD800), "ben": Unprintable(), "cy": "fine"}[student]
        return [{"student": student + chr(0xDFFF), "notebook": path.stem,
                 "exercise": "(notebook)", "passed": False, "points": "", "seconds": "",
                 "message": message}]
    monkeypatch.setattr(grade.Grader, "notebook", fake)
    out = tmp_path / "out"
    rows = grade.grade(tmp_path / "subs", out, timeout=5, use_bwrap=False)
    assert [r["message"] for r in rows] == ["forged \ufffd", "(unprintable)", "fine"]
    for name in ("grades.csv", "grades.md", "grades-moodle.csv"):
        assert "cy" in (out / name).read_text(encoding="utf-8")

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(grade, "write_tables", broken)
    with pytest.raises(OSError):
        grade.grade(tmp_path / "subs", out, timeout=5, use_bwrap=False)
    assert not any((out / name).exists() for name in ("grades.csv", "grades.md",
                                                      "grades-moodle.csv"))


@needs_bwrap
def test_torchs_quantizable_multi_head_attention_is_blocked(tmp_path):
    """The red team's chapter 3 submission: torch's quantizable MultiheadAttention (under any of
    its module paths) is the reference too, and patterns ignore case and underscores."""
    import cloudpickle
    import torch

    from attnlab.exercises import _core, _wire

    def my_mha(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads,
               key_mask):
        import torch.ao.nn.quantizable as qz
        m = qz.MultiheadAttention(x.shape[-1], num_heads).to(x.dtype)
        xt = x.transpose(0, 1)
        return m(xt, xt, xt, need_weights=True, average_attn_weights=False)

    def deep(x, *args):
        from torch.ao.nn.quantizable.modules.activation import MultiheadAttention
        return MultiheadAttention(x.shape[-1], 2)

    def renamed(x, *args):
        import torch
        return getattr(torch.nn.quantizable, "MultiheadAttention")(x.shape[-1], 2)

    sandbox = grade_sandbox.Sandbox()
    checker = grade.Checker(sandbox, grade_sandbox.Limits(), function_timeout=10)
    w = torch.randn(24, 8, dtype=torch.float64)
    args = _wire.encode([torch.randn(2, 5, 8, dtype=torch.float64), w, torch.zeros(24),
                         torch.randn(8, 8), torch.zeros(8), 2, None])
    try:
        for fn in (my_mha, deep, renamed):
            data = {"__function__": base64.b64encode(cloudpickle.dumps(fn)).decode(),
                    "name": "f"}
            for forbid in (_core.MULTI_HEAD, ("*multi_head",)):
                runner = grade.Runner(checker, data, list(forbid), time.monotonic() + 120)
                try:
                    reply = json.loads(runner.call(args, _wire.encode({})))
                finally:
                    runner.stop()
                assert reply.get("raised") == "ReferenceUnavailable", (fn.__name__, reply)
    finally:
        checker.close()
        sandbox.close()


@needs_bwrap
def test_guard_breakers_built_from_pieces_are_blocked_at_run_time():
    """The red team's disguised submission: names built with "".join escape the scan of the
    pickle, but the guard breakers themselves are replaced in the function's sandbox; torch's
    own uses of them (tensor subclasses, nn.init, operator look-ups) still work."""
    import cloudpickle
    import torch

    from attnlab.exercises import _core, _wire

    def disguised(q, k, v, mask=None, is_causal=False):
        import torch
        j = "".join
        D = getattr(torch._C, j(["Disable", "Torch", "Function"]))
        get = getattr(torch._C, j(["_get_oper", "ation_over", "load"]))
        with D():
            op = get(j(["aten::scaled_dot_product_", "atten", "tion"]), "")
            op = op[0] if isinstance(op, tuple) else op
            return op(q, k, v, mask, 0.0, is_causal)

    def popped(q, k, v, mask=None, is_causal=False):
        import torch
        import torch.nn.functional as F
        getattr(torch.overrides.TorchFunctionMode, "__exit__")(object(), None, None, None)
        getattr(torch._C, "_pop" + "_torch_function_stack")()
        return F.scaled_dot_product_attention(q, k, v)

    def honest(q, k, v, mask=None, is_causal=False):
        import torch
        lin = torch.nn.Linear(q.shape[-1], q.shape[-1])          # parameters, nn.init
        s = lin(q) @ k.transpose(-2, -1) * 0 + q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        return torch.ops.aten.softmax.int(s, -1) @ v

    sandbox = grade_sandbox.Sandbox()
    checker = grade.Checker(sandbox, grade_sandbox.Limits(), function_timeout=10)
    q = torch.randn(2, 3, 4)
    args = _wire.encode([q, q, q])
    try:
        for fn in (disguised, popped, honest):
            data = {"__function__": base64.b64encode(cloudpickle.dumps(fn)).decode(), "name": "f"}
            runner = grade.Runner(checker, data, list(_core.ATTENTION + _core.MULTI_HEAD),
                                  time.monotonic() + 120)
            try:
                reply = json.loads(runner.call(args, _wire.encode({})))
            finally:
                runner.stop()
            if fn is honest:
                got = _wire.decode(reply["result"])
                assert torch.allclose(got, torch.softmax(q @ q.transpose(-2, -1) / 2, -1) @ q,
                                      atol=1e-5), reply
            else:
                assert reply.get("raised") == "ReferenceUnavailable", (fn.__name__, reply)
                assert "guards" in reply["message"], reply
    finally:
        checker.close()
        sandbox.close()


@needs_bwrap
def test_the_complex_step_is_refused_where_autograd_is():
    """The red team's chapter 1 submission: where a task forbids autograd ("derive the
    gradient"), the complex step (cast to complex, divide the imaginary part by a tiny step) is
    refused too; real arithmetic is not."""
    import cloudpickle
    import torch

    from attnlab.exercises import _core, _wire

    def lookup_gradient(q, keys, values):
        import torch
        h = 1e-30
        d = q.shape[0]
        eye = torch.eye(d, dtype=torch.complex128)
        qc = q.to(torch.complex128)[None, :] + 1j * h * eye
        s = qc @ keys.to(torch.complex128).T
        s = s - s.real.max(dim=1, keepdim=True).values
        e = torch.exp(s)
        y = (e * values.to(torch.complex128)).sum(1) / e.sum(1)
        return (y.imag / h).to(q.dtype)

    def scalar(q, keys, values):
        return (q * 1j).real

    def real(q, keys, values):
        import torch
        w = torch.softmax(keys @ q, 0)
        return keys.T @ (w * (values - (w * values).sum()))

    sandbox = grade_sandbox.Sandbox()
    checker = grade.Checker(sandbox, grade_sandbox.Limits(), function_timeout=10)
    q, keys, values = (torch.randn(4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64),
                       torch.randn(5, dtype=torch.float64))
    args = _wire.encode([q, keys, values])
    try:
        for fn, forbid, refused in ((lookup_gradient, _core.AUTOGRAD, True),
                                    (scalar, _core.AUTOGRAD, True), (real, _core.AUTOGRAD, False),
                                    (lookup_gradient, (), False)):
            data = {"__function__": base64.b64encode(cloudpickle.dumps(fn)).decode(), "name": "f"}
            runner = grade.Runner(checker, data, list(forbid), time.monotonic() + 120)
            try:
                reply = json.loads(runner.call(args, _wire.encode({})))
            finally:
                runner.stop()
            if refused:
                assert reply.get("raised") == "ReferenceUnavailable", (fn.__name__, reply)
                assert "complex" in reply["message"], reply
            else:
                assert "result" in reply, (fn.__name__, reply)
    finally:
        checker.close()
        sandbox.close()


def test_folder_names_that_would_look_like_another_are_not_graded(tmp_path, monkeypatch):
    """'alice' plus a vertical tab must not pass for alice in the tables (nor 'Alice' for
    'alice'): such folders get one 'not graded' row and no Moodle row; alice is graded."""
    names = ["alice", "alice\v", "alice ", "bob\u200b", "Carol", "carol", "ｄan", "d\u00e9b"]
    for student in names:
        (tmp_path / "subs" / student).mkdir(parents=True)
        (tmp_path / "subs" / student / "notes.ipynb").write_text("{}")

    def fake(self, student, path):
        return [{"student": student, "notebook": path.stem, "exercise": "(notebook)",
                 "passed": True, "points": "", "seconds": "", "message": "graded"}]
    monkeypatch.setattr(grade.Grader, "notebook", fake)
    out = tmp_path / "out"
    rows = grade.grade(tmp_path / "subs", out, timeout=5, use_bwrap=False)
    graded = [r["student"] for r in rows if r["message"] == "graded"]
    assert graded == ["alice", "d\u00e9b"], rows
    refused = [r for r in rows if r["message"].startswith("not graded: the folder name")]
    assert len(refused) == len(names) - 2 and all(r["points"] == "" for r in refused)
    moodle = (out / "grades-moodle.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in moodle[1:]] == ["alice", "d\u00e9b"]


@needs_bwrap
def test_loading_a_function_counts_against_its_budget():
    """The red team's slow pickle: a ``__reduce__`` that sleeps while the function is loaded
    spends the function's own time budget, not free time."""
    import cloudpickle
    import torch

    from attnlab.exercises import _wire

    class Nap:
        def __reduce__(self):
            import time
            return (time.sleep, (4,))
    nap = Nap()

    def slow(q, k, v):
        nap                                                             # noqa: B018
        return q

    sandbox = grade_sandbox.Sandbox()
    checker = grade.Checker(sandbox, grade_sandbox.Limits(), function_timeout=3)
    data = {"__function__": base64.b64encode(cloudpickle.dumps(slow)).decode(), "name": "f"}
    try:
        runner = grade.Runner(checker, data, [], time.monotonic() + 120)
        try:
            reply = json.loads(runner.call(_wire.encode([torch.ones(2)] * 3), _wire.encode({})))
        finally:
            runner.stop()
    finally:
        checker.close()
        sandbox.close()
    assert reply.get("raised") == "TimeoutError" and "loading" in reply["message"], reply


def test_progress_in_an_ascii_locale_cannot_stop_the_run(tmp_path):
    """The command line in a locale without UTF-8: a folder named 'a✓' (and a message with a
    lone surrogate) print as best they can, and every table is written."""
    for student in ("a\u2713", "b"):
        (tmp_path / "subs" / student).mkdir(parents=True)
        (tmp_path / "subs" / student / "notes.ipynb").write_text("{}")
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C", "LANG": "C"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "grade.py"),
                           str(tmp_path / "subs"), "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("grades.csv", "grades.md", "grades-moodle.csv"):
        text = (tmp_path / "out" / name).read_text(encoding="utf-8")
        assert "a\u2713" in text and "\nb" in text.replace("| b", "\nb")
