"""The notebooks where readers run them: Colab's packages, the wheel, outside the checkout.

The book's own environment has Sphinx and myst-nb; a reader's has neither, so a notebook can
pass every other test and still fail in Colab. `tools/reader_env.py` builds a reader's
environment and runs chapter 2 whole and the setup and import cells of every chapter there
(`make reader` runs every chapter whole).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.reader
def test_notebooks_run_in_a_readers_environment():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "reader_env.py")],
                          capture_output=True, text=True, timeout=1800)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = [line for line in proc.stdout.splitlines() if line.endswith(" ok")]
    assert len(ran) == len(list((ROOT / "notebooks").glob("*.ipynb"))), proc.stdout


def test_setup_cell_says_what_to_do_when_pip_cannot_install(monkeypatch):
    """Until the book is published at its URL (or offline), pip fails: one sentence, no traceback
    of pip's, tells the reader to install from a clone."""
    path = sorted((ROOT / "notebooks").glob("*.ipynb"))[0]
    setup = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    calls = []

    def failed_pip(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: could not reach the repository\n")

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(subprocess, "run", failed_pip)
    with pytest.raises(SystemExit) as exc:
        exec(setup.source, {})
    message = str(exc.value)
    assert calls and "pip" in calls[0] and "install" in calls[0]
    assert "could not reach the repository" in message and "pip install '.[book]'" in message
    assert "\n" not in message
