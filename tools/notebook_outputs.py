"""Keep notebooks free of outputs, except the cells nbval compares.

Notebooks are stored without outputs. The only exception: code cells that start with
``# NBVAL_CHECK_OUTPUT`` keep their (small, text) outputs, because nbval compares a fresh run
against them; a check cell with no stored output would compare against nothing and always pass.

    python tools/notebook_outputs.py --strip notebooks/*.ipynb           # strip all but check cells
    python tools/notebook_outputs.py --refresh-checks notebooks/*.ipynb  # execute, store check outputs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CHECK = "# NBVAL_CHECK_OUTPUT"


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK)


def _text_only(outputs):
    """Keep stream and plain-text results only (no images, no widget state)."""
    kept = []
    for out in outputs:
        if out.output_type == "stream":
            kept.append(out)
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.get("data", {}):
            out = nbformat.from_dict({**out, "data": {"text/plain": out.data["text/plain"]}, "metadata": {}})
            if out.output_type == "execute_result":
                out.execution_count = None
            kept.append(out)
    return kept


def clean(nb, executed=None):
    """Strip outputs and execution counts; check cells take their outputs from ``executed``."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if is_check_cell(cell):  # nbval skips cells that look unrun: keep a count with the outputs
            if executed is not None:
                cell.outputs = _text_only(executed.cells[i].outputs)
                cell.execution_count = executed.cells[i].execution_count
        else:
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--strip", action="store_true")
    mode.add_argument("--refresh-checks", action="store_true")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        executed = None
        if args.refresh_checks:
            from nbclient import NotebookClient

            executed = nbformat.read(path, as_version=4)
            NotebookClient(executed, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(clean(nb, executed), path)
        print(f"{'refreshed' if executed else 'stripped'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
