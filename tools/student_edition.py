"""Write the student edition: copies of the notebooks with every solution cell removed.

A solution cell is any cell tagged ``solution`` (the gated ``solution-start`` markdown, the
solution's code and the ``solution-end`` markdown). The exercises themselves stay, followed by an
empty code cell to work in, unless the exercise already has a ``stub`` cell (a function that
raises ``NotImplementedError`` or an answer left as ``...``, and its checker): students work in
the stub, and the checker says "Not done yet" until they do. Outputs are stripped.

    python tools/student_edition.py notebooks student
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

TAG = "solution"


def is_solution(cell) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def is_stub(cell) -> bool:
    return "stub" in cell.get("metadata", {}).get("tags", [])


def student_copy(nb):
    """Return ``nb`` without solution cells; a blank code cell replaces each removed solution
    that has no stub cell before it."""
    cells, removed, previous_was_solution = [], 0, False
    for cell in nb.cells:
        if is_solution(cell):
            removed += 1
            if not previous_was_solution and not (cells and is_stub(cells[-1])):
                cells.append(nbformat.v4.new_code_cell("# Your solution here\n"))
            previous_was_solution = True
            continue
        previous_was_solution = False
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    nb.metadata["attnlab_student_edition"] = {"solution_cells_removed": removed}
    return nb, removed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder of notebooks")
    parser.add_argument("dest", type=Path, help="folder for the student edition")
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.source.glob("*.ipynb")):
        nb, removed = student_copy(nbformat.read(path, as_version=4))
        nbformat.write(nb, args.dest / path.name)
        print(f"{args.dest / path.name}: {removed} solution cells removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
