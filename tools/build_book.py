"""Build the book with Jupyter Book 1.x; fail on any warning or cell error.

    python tools/build_book.py            # cached execution (what `make book` does)
    python tools/build_book.py --force    # execute every notebook afresh (what `make test` does)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


STAMP = ROOT / "_build" / ".attnlab-hash"


def library_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "attnlab").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def library_changed() -> bool:
    """The execution cache keys on a notebook's code only; a change in attnlab must also re-run it.

    Returns True (after clearing the cache) when attnlab changed since the last good build.
    """
    if STAMP.exists() and STAMP.read_text() == library_digest():
        return False
    shutil.rmtree(ROOT / "_build" / ".jupyter_cache", ignore_errors=True)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="re-execute every notebook")
    args = parser.parse_args()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "-W", "--keep-going"]
    if args.force:
        config = (ROOT / "_config.yml").read_text()
        if "execute_notebooks: cache" not in config:
            sys.exit("_config.yml must say `execute_notebooks: cache` (the forced build rewrites it)")
        forced = ROOT / "_build" / "_config_forced.yml"
        forced.parent.mkdir(exist_ok=True)
        config = config.replace("execute_notebooks: cache", "execute_notebooks: force")
        # local Sphinx extensions are found relative to the config file: point at the real folder
        config = re.sub(r"(local_extensions:\n(?:\s+\w+: .*\n)*?\s+\w+: )tools/",
                        lambda m: f"{m.group(1)}{ROOT / 'tools'}/", config)
        forced.write_text(config)
        cmd += ["--all", "--config", str(forced)]
    elif library_changed():  # re-read every page and re-run every notebook
        cmd.append("--all")
    start = time.perf_counter()
    # The notebooks see that they run for the rendered page: live figures load the vendored
    # Vega, and kernel-only widgets are left out (attnlab.live, attnlab.viz.interactive).
    env = {**os.environ, "ATTNLAB_BOOK_BUILD": "1"}
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if code == 0:
        STAMP.write_text(library_digest())
    print(f"book build {'(forced) ' if args.force else ''}took {time.perf_counter() - start:.1f} s, exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
