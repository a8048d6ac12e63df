"""Run one student's notebook for the grader, inside its sandbox: every cell, on past errors.

    python grade_execute.py NOTEBOOK RESULT

Writes ``RESULT`` as JSON: ``{"status": "ran" | "errors" | "crashed" | "unreadable",
"detail": text}``. The notebook's code can overwrite that file, so the grader reads it as a
claim about the notebook's own run and nothing more (see tools/grade.py).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def execute(notebook: Path, result: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    def report(status: str, detail: str) -> None:
        result.write_text(json.dumps({"status": status, "detail": detail[:2000]}))

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as e:  # noqa: BLE001 - not a notebook: say so
        report("unreadable", f"{type(e).__name__}: {e}"[:500])
        return
    client = NotebookClient(nb, timeout=None, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute()
    except Exception as e:  # noqa: BLE001 - a dead kernel or the like: report it
        report("crashed", f"{type(e).__name__}: {e}"[:500])
        return
    errors = [f"cell {i + 1}: {o.get('ename')}: {o.get('evalue')}"[:300]
              for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    report("errors" if errors else "ran", "; ".join(errors))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    execute(Path(sys.argv[1]), Path(sys.argv[2]))
