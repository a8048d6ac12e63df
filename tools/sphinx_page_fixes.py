"""Build glue for the rendered pages (a local Sphinx extension, named in _config.yml).

1. sphinx-thebe registers its small configuration script each time Sphinx fires
   ``env-before-read-docs``, which a Jupyter Book build does twice: every page then declared
   ``const THEBE_JS_URL`` twice (a JavaScript error), and sphinx-togglebutton's selector twice.
   This drops a script that a page would include a second time.
2. Only the book on the page: in a notebook's code cells, the lines that exist for the build
   (``# NBVAL_...`` markers for the notebook tests, ``glue(...)`` calls that hand a number to the
   prose, ``target(...)`` calls that assert a learning target) are left out of the code shown;
   a cell with nothing else left (or only comments, which spoke of those lines) is not shown. The notebooks keep those lines (they run
   them), and Jupyter and Colab show them.
"""
from __future__ import annotations

import ast

from docutils import nodes

BUILD_ONLY_CALLS = {"glue", "target"}


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = (getattr(script, "filename", str(script)) or "",  # None and "" both mean inline
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def _build_only(stmt: ast.stmt) -> bool:
    """A ``glue(...)`` / ``target(...)`` call, or a loop, ``if`` or ``with`` made only of them."""
    if isinstance(stmt, ast.Expr):
        call = stmt.value
        return (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id in BUILD_ONLY_CALLS)
    if isinstance(stmt, (ast.For, ast.While, ast.If, ast.With)):
        return all(_build_only(s) for s in stmt.body + getattr(stmt, "orelse", []))
    return False


def build_only_lines(source: str) -> set[int]:
    """Line numbers (0-based) of ``source`` that only serve the build: NBVAL markers and the
    ``glue(...)`` / ``target(...)`` statements at any depth (however many lines they span),
    with a loop or ``if`` that holds nothing else, and the comments that introduce them (right
    above, no blank line between) or close the cell after them."""
    lines = source.split("\n")
    drop = {i for i, line in enumerate(lines) if line.strip().startswith("# NBVAL_")}
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics and the like: leave the cell as it is
        return drop

    def visit(body: list, nested: bool = False) -> None:
        if nested and all(_build_only(stmt) for stmt in body):
            return  # keep it: a block cannot be left empty (its header stays for other code)
        for stmt in body:
            if _build_only(stmt):
                drop.update(range(stmt.lineno - 1, stmt.end_lineno))
                continue
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(stmt, field, []) or [], nested=True)
            for handler in getattr(stmt, "handlers", []) or []:
                visit(handler.body, nested=True)

    visit(tree.body)
    # a comment that speaks of those lines goes with them: a run of full-line comments right
    # above a dropped statement, or at the end of the cell after one
    code = [i for i, line in enumerate(lines)
            if line.strip() and not line.lstrip().startswith("#")]
    i = 0
    while i < len(lines):
        if not (lines[i].lstrip().startswith("#") and i not in drop):
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].lstrip().startswith("#"):
            j += 1
        before = [k for k in code if k < i]
        after = [k for k in code if k >= j]
        if (after and after[0] == j and j in drop) or (not after and before and before[-1] in drop):
            drop.update(range(i, j))
        i = j
    return drop


def _drop_build_lines(app, doctree, docname):
    for block in list(doctree.findall(nodes.literal_block)):
        cell_input = block.parent
        if not (isinstance(cell_input, nodes.container)
                and "cell_input" in cell_input.get("classes", [])):
            continue
        source = block.astext()
        drop = build_only_lines(source)
        if not drop:
            continue
        kept = [line for i, line in enumerate(source.split("\n")) if i not in drop]
        while kept and not kept[0].strip():
            kept.pop(0)
        while kept and not kept[-1].strip():
            kept.pop()
        if any(line.strip() and not line.lstrip().startswith("#") for line in kept):
            text = "\n".join(kept)
            block.rawsource = text
            block.children = [nodes.Text(text)]
            continue
        cell = cell_input.parent
        cell.remove(cell_input)
        if not any(isinstance(c, nodes.Element) for c in cell.children):
            cell.parent.remove(cell)


def setup(app):
    # last, after the theme's handlers have added their scripts
    app.connect("html-page-context", _drop_repeated_scripts, priority=999)
    app.connect("doctree-resolved", _drop_build_lines)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
