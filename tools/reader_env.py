"""Run the notebooks where readers run them: a Colab-like environment, outside the checkout.

    python tools/reader_env.py                 # chapter 2 whole, setup + imports of every chapter
    python tools/reader_env.py --all           # every chapter, whole
    python tools/reader_env.py --whole 05 11   # these chapters whole (and the setup of the rest)

The book's own environment has what only the build needs (Sphinx, myst-nb, jupyter-book, nbval),
so a notebook can pass there and fail in Colab. This script makes a reader's environment instead:

1. a virtual environment (``_reader/venv``, kept between runs) holding only packages that Colab
   preinstalls (``COLAB``; the names come from Colab's published ``pip freeze``, see
   CONTRIBUTING.md), with the same torch as ``.venv`` so that nothing large is downloaded twice;
2. ``attnlab`` installed into it the way a reader installs it: a wheel built from this checkout,
   then ``pip install "<wheel>[book]"``;
3. each notebook copied to a temporary folder outside the checkout (so the checkout's
   ``attnlab/`` cannot be imported by accident) and executed there by a Jupyter kernel of that
   environment, with a last cell that checks where ``attnlab`` came from and that neither myst-nb
   nor Sphinx is importable.

Exit status 0 when every notebook ran; otherwise the failing cell's error is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READER = ROOT / "_reader"
# What the notebooks need that Colab preinstalls (torch and torchvision are pinned below).
COLAB = ["numpy", "matplotlib", "ipywidgets", "ipykernel", "nbconvert", "nbclient",
         "scikit-learn", "scikit-image", "altair", "tqdm", "pandas"]
CHECK = """\
import importlib.util, sys, attnlab
venv = {venv!r}
assert sys.prefix == venv, f"kernel runs in {{sys.prefix}}, not the reader's venv {{venv}}"
assert attnlab.__file__.startswith(venv), f"attnlab imported from {{attnlab.__file__}}"
build_only = [m for m in ("myst_nb", "sphinx", "jupyter_book", "nbval")
              if importlib.util.find_spec(m) is not None]
assert not build_only, f"the reader's environment has build-only packages: {{build_only}}"
print("reader-env-ok")
"""
RUNNER = """\
import json, sys, time, pathlib, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
path, timeout = sys.argv[1], float(sys.argv[2])
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
try:
    folder = str(pathlib.Path(path).parent)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": folder}}).execute()
    error = ""
except CellExecutionError as e:
    error = str(e).strip().splitlines()[-1][:400] if str(e).strip() else type(e).__name__
except Exception as e:  # a dead kernel, a timeout
    error = f"{type(e).__name__}: {e}"[:400]
out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []))
ok = not error and "reader-env-ok" in out
print(json.dumps({"ok": ok, "error": error, "seconds": round(time.perf_counter() - start, 1)}))
"""


def run(cmd: list[str], **kw) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def versions() -> dict[str, str]:
    """torch and torchvision as installed in the book's environment (to reuse their wheels)."""
    from importlib.metadata import version
    return {name: version(name).split("+")[0] for name in ("torch", "torchvision")}


def make_venv(venv: Path) -> Path:
    """The Colab-like environment, created once and reused while its package list is the same."""
    python = venv / "bin" / "python"
    wanted = COLAB + [f"{k}=={v}" for k, v in versions().items()]
    stamp = venv / ".colab-packages"
    if not (python.exists() and stamp.exists() and stamp.read_text() == "\n".join(wanted)):
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        run([str(python), "-m", "pip", "install", "-q", *wanted])
        stamp.write_text("\n".join(wanted))
    return python


def install_attnlab(python: Path) -> None:
    """Build the wheel from this checkout and install it as the README tells readers to."""
    dist = READER / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(ROOT)])
    wheel = next(dist.glob("attnlab-*.whl"))
    run([str(python), "-m", "pip", "install", "-q", f"{wheel}[book]"])
    run([str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)])


def prepare(notebook: Path, folder: Path, whole: bool, venv: Path) -> Path:
    """A copy of ``notebook`` in ``folder``: whole, or its setup and import cells only; plus the
    check of where everything came from."""
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    if not whole:
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"][:2]
        nb.cells = nb.cells[:code[-1] + 1]
    nb.cells.append(nbformat.v4.new_code_cell(CHECK.format(venv=str(venv))))
    copy = folder / notebook.name
    nbformat.write(nb, copy)
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="run every chapter whole")
    parser.add_argument("--whole", nargs="*", default=["02"],
                        help="chapter numbers to run whole (default: 02)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per cell")
    args = parser.parse_args()

    start = time.perf_counter()
    venv = READER / "venv"
    python = make_venv(venv)
    install_attnlab(python)
    print(f"reader's environment ready in {time.perf_counter() - start:.0f} s: {venv}",
          flush=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ATTNLAB_", "ATEN_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "MPL"))}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="reader-") as tmp:
        folder = Path(tmp) / "notebooks"
        folder.mkdir()
        env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                   JUPYTER_DATA_DIR=str(Path(tmp) / "jupyter"), HOME=tmp,
                   JUPYTER_PATH=str(venv / "share" / "jupyter"))
        runner = Path(tmp) / "run_notebook.py"
        runner.write_text(RUNNER)
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
            whole = args.all or notebook.name[:2] in args.whole
            copy = prepare(notebook, folder, whole, venv)
            proc = subprocess.run([str(python), str(runner), str(copy), str(args.timeout)],
                                  cwd=folder, env=env, capture_output=True, text=True)
            try:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                result = {"ok": False, "seconds": 0,
                          "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            failed += not result["ok"]
            what = "whole" if whole else "setup and imports"
            print(f"{notebook.stem:<36} {what:<17} {result['seconds']:6.1f} s  "
                  + ("ok" if result["ok"] else f"FAILED: {result['error']}"), flush=True)
    print(f"reader's environment: {'all notebooks ran' if not failed else f'{failed} failed'} "
          f"({time.perf_counter() - start:.0f} s in all)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
