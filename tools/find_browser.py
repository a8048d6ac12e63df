"""Find a Chromium or Chrome for the rendered-page test; install one only where that is safe.

    python tools/find_browser.py            # print the browser's path, or say what to install
    python tools/find_browser.py --install  # the same, but install Debian's chromium when root

Where it looks, in order: ``$CHROMIUM`` (any path you choose), the usual names on the PATH, the
usual places on Linux and macOS, then the browsers Playwright manages itself
(``python -m playwright install chromium``). ``--install`` runs ``apt-get install chromium`` only
as root on Debian or Ubuntu; anywhere else it stops with one sentence that says what to install.
``make test`` and ``tests/test_rendered.py`` both use this file, so they agree.
"""
from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"]
LOCATIONS = [
    "/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium",
    "/usr/bin/google-chrome", "/opt/google/chrome/chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "~/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "~/Applications/Chromium.app/Contents/MacOS/Chromium",
]
PLAYWRIGHT = [  # where `python -m playwright install chromium` puts its browser
    "~/.cache/ms-playwright/chromium-*/chrome-linux*/chrome",
    "~/Library/Caches/ms-playwright/chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
    "~/Library/Caches/ms-playwright/chromium-*/chrome-mac*/*.app/Contents/MacOS/*",
]
ADVICE = ("no Chromium or Chrome found for the rendered-page test: install Google Chrome or "
          "Chromium (Debian/Ubuntu: `sudo apt-get install chromium`; macOS: `brew install "
          "--cask chromium`), or run `.venv/bin/python -m playwright install chromium`, or set "
          "CHROMIUM=/path/to/chrome.")


def _executable(path: str) -> str | None:
    p = Path(path).expanduser()
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None


def find_browser() -> str | None:
    """The path of a usable Chromium or Chrome, or None."""
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        return _executable(chosen) or shutil.which(chosen)
    for name in NAMES:
        if shutil.which(name):
            return shutil.which(name)
    for path in LOCATIONS:
        if _executable(path):
            return _executable(path)
    for pattern in PLAYWRIGHT:
        for path in sorted(glob.glob(os.path.expanduser(pattern)), reverse=True):
            if _executable(path):
                return path
    return None


def can_apt_install() -> bool:
    """Root on Debian or Ubuntu with apt-get: the one place this script installs anything."""
    if platform.system() != "Linux" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        release = Path("/etc/os-release").read_text().lower()
    except OSError:
        return False
    return shutil.which("apt-get") is not None and ("debian" in release or "ubuntu" in release)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    browser = find_browser()
    if browser is None and "--install" in argv and can_apt_install():
        print("installing Debian's chromium with apt-get (about 30 s) ...", file=sys.stderr)
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
                break
        browser = find_browser()
    if browser is None:
        print(ADVICE, file=sys.stderr)
        return 1
    print(browser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
