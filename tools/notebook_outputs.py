"""Notebooks are stored without outputs; the outputs nbval compares are kept beside them.

Code cells that start with ``# NBVAL_CHECK_OUTPUT`` are compared by nbval with a reference output.
Those references live in ``tests/notebook_checks/<notebook>.json`` (matched by the cell's source),
never in the notebook: a check cell with no reference would compare against nothing and always
pass, so ``--inject`` refuses to run without one.

    python tools/notebook_outputs.py --strip notebooks/*.ipynb            # remove every output
    python tools/notebook_outputs.py --refresh-checks notebooks/*.ipynb   # execute, store references
    python tools/notebook_outputs.py --inject _nbval notebooks/*.ipynb    # copies for nbval to run
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

CHECK = "# NBVAL_CHECK_OUTPUT"
REFERENCES = Path(__file__).resolve().parents[1] / "tests" / "notebook_checks"


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK)


def reference_path(notebook: Path) -> Path:
    return REFERENCES / f"{Path(notebook).stem}.json"


def load_references(notebook: Path) -> dict[str, list]:
    """Reference outputs of a notebook's check cells: source -> list of outputs."""
    path = reference_path(notebook)
    if not path.exists():
        return {}
    return {c["source"]: c["outputs"] for c in json.loads(path.read_text())["cells"]}


def _text_only(outputs) -> list[dict]:
    """Keep stream and plain-text results only (no images, no widget state)."""
    kept = []
    for out in outputs:
        if out.output_type == "stream":
            kept.append({"output_type": "stream", "name": out.name, "text": out.text})
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.get("data", {}):
            kept.append({"output_type": "display_data", "data": {"text/plain": out.data["text/plain"]},
                         "metadata": {}})
    return kept


def strip(nb):
    """Remove every output, execution count and stored widget state."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def refresh(path: Path) -> None:
    """Execute the notebook; store its check cells' outputs as references; strip the notebook."""
    from nbclient import NotebookClient

    executed = nbformat.read(path, as_version=4)
    NotebookClient(executed, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    cells = [{"source": c.source, "outputs": _text_only(c.outputs)} for c in executed.cells if is_check_cell(c)]
    REFERENCES.mkdir(parents=True, exist_ok=True)
    reference_path(path).write_text(json.dumps({"notebook": path.name, "cells": cells}, indent=1) + "\n")
    nbformat.write(strip(nbformat.read(path, as_version=4)), path)


def inject(path: Path, dest: Path) -> Path:
    """Write a copy of the notebook with the reference outputs in its check cells (nbval reads them)."""
    nb = nbformat.read(path, as_version=4)
    references = load_references(path)
    for i, cell in enumerate(nb.cells):
        if is_check_cell(cell):
            if cell.source not in references:
                raise SystemExit(f"{path.name} cell {i} is checked by nbval but has no reference output "
                                 f"in {reference_path(path)}: run `make checks`")
            cell.outputs = [nbformat.from_dict(o) for o in references[cell.source]]
            cell.execution_count = 1  # nbval skips cells that look unrun
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest / path.name)
    return dest / path.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--strip", action="store_true")
    mode.add_argument("--refresh-checks", action="store_true")
    mode.add_argument("--inject", type=Path, metavar="DIR")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.notebooks:
        if args.strip:
            nbformat.write(strip(nbformat.read(path, as_version=4)), path)
            print(f"stripped {path}")
        elif args.refresh_checks:
            refresh(path)
            print(f"refreshed {reference_path(path)}")
        else:
            print(f"wrote {inject(path, args.inject)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
