"""Finding a browser for the rendered-page test on a newcomer's machine (tools/find_browser.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import find_browser as fb  # noqa: E402


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """A machine with no browser anywhere: empty PATH, no usual places, no Playwright cache."""
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fb, "LOCATIONS", [])
    return tmp_path


def fake_browser(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_no_browser_as_an_ordinary_user_says_what_to_install(nowhere, monkeypatch, capsys):
    monkeypatch.setattr(fb, "can_apt_install", lambda: False)
    assert fb.find_browser() is None
    assert fb.main(["--install"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == fb.ADVICE and "\n" not in err and "Traceback" not in err


def test_browser_at_a_non_default_path(nowhere, monkeypatch):
    chrome = fake_browser(nowhere / "opt" / "my chrome" / "chrome")
    monkeypatch.setenv("CHROMIUM", str(chrome))
    assert fb.find_browser() == str(chrome)
    monkeypatch.setenv("CHROMIUM", str(nowhere / "missing"))
    assert fb.find_browser() is None


def test_browser_on_the_path_under_another_name_and_playwrights_own(nowhere, monkeypatch):
    playwright = fake_browser(nowhere / "home" / ".cache" / "ms-playwright" / "chromium-1200"
                              / "chrome-linux" / "chrome")
    assert fb.find_browser() == str(playwright)
    chrome = fake_browser(nowhere / "bin" / "google-chrome")
    monkeypatch.setenv("PATH", str(chrome.parent))
    assert fb.find_browser() == str(chrome)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run the check as an ordinary user")
def test_make_browser_as_a_real_ordinary_user_gives_one_sentence(tmp_path):
    """The script run as `nobody` with no browser to find: one sentence, exit 1, no traceback."""
    code = ("import sys; sys.path.insert(0, %r); import find_browser as f; f.LOCATIONS = []; "
            "sys.exit(f.main(['--install']))" % str(ROOT / "tools"))
    python = shutil.which("python3", path="/usr/bin:/bin")  # the venv's may sit under /root
    if python is None:
        pytest.skip("no system python3 that an ordinary user can run")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                           python, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == fb.ADVICE and proc.stdout == ""
