"""The book's structure: notebooks, setup cells, exercises, TOC, bibliography, student edition."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
sys.path.insert(0, str(ROOT / "tools"))
from notebook_outputs import inject, is_check_cell, load_references  # noqa: E402
from student_edition import is_solution, student_copy  # noqa: E402

ids = [p.stem for p in NOTEBOOKS]


def read(path):
    return nbformat.read(path, as_version=4)


def toc_files():
    files = [TOC["root"]]
    for part in TOC["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found"


def test_every_notebook_is_in_the_toc_and_every_toc_file_exists():
    files = toc_files()
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in files, f"{nb.name} is not in _toc.yml"
    for f in files:
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f"_toc.yml lists missing {f}"


def test_toc_parts_are_captioned_and_chapters_numbered():
    assert all(part.get("caption") for part in TOC["parts"])
    chapter_parts = [p for p in TOC["parts"] if any(c["file"].startswith("notebooks/") for c in p["chapters"])]
    assert chapter_parts and all(p.get("numbered") for p in chapter_parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stored_without_outputs(path):
    nb = read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {i} has stored outputs"
    assert "widgets" not in nb.metadata, "stored widget state: strip it (tools/notebook_outputs.py --strip)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_check_cell_has_a_reference_output_and_none_is_stale(path):
    checked = [c.source for c in read(path).cells if is_check_cell(c)]
    assert checked, "a chapter checks some deterministic output with nbval (# NBVAL_CHECK_OUTPUT)"
    references = load_references(path)
    missing = [src.splitlines()[1] if "\n" in src else src for src in checked if src not in references]
    assert not missing, f"check cells without a reference output (run `make checks`): {missing}"
    assert all(references[src] for src in checked), "a reference with no output compares against nothing"
    assert set(references) == set(checked), "references for cells that no longer exist (run `make checks`)"


def test_injected_copy_carries_the_references(tmp_path):
    path = NOTEBOOKS[0]
    copy = read(inject(path, tmp_path))
    references = load_references(path)
    checked = [c for c in copy.cells if is_check_cell(c)]
    assert checked and all(c.outputs == references[c.source] and c.execution_count for c in checked)
    assert all(not c.outputs for c in copy.cells if c.cell_type == "code" and not is_check_cell(c))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_kernel_is_python3(path):
    assert read(path).metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_first_cells_label_title_and_setup(path):
    nb = read(path)
    head = nb.cells[0]
    assert head.cell_type == "markdown"
    assert re.match(r"\(chap-[a-z0-9-]+\)=\n# \S", head.source), "first cell: a (chap-...)= label, then the title"
    assert "Learning goals" in head.source or "Learning goals" in nb.cells[1].source
    setup = next(c for c in nb.cells if c.cell_type == "code")
    src = setup.source
    assert f"attnlab[book] @ git+{REPO_URL}" in src, "setup cell must install attnlab from _config.yml's repository URL"
    assert "find_spec(m) is None" in src and '"timm"' in src
    assert "device = get_device()" in src and "SEED = seed_everything()" in src


def test_setup_cell_is_the_same_in_every_notebook():
    setups = {p.stem: next(c for c in read(p).cells if c.cell_type == "code").source for p in NOTEBOOKS}
    assert len(set(setups.values())) == 1, f"setup cells differ: {sorted(setups)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_exercises_have_hidden_solutions(path):
    nb = read(path)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    exercises = re.findall(r"\{exercise\}[^\n]*\n:label: (\S+)", text)
    assert len(exercises) >= 5, f"{len(exercises)} exercises, want at least 5"
    for label in exercises:
        start = re.search(r"\{solution(?:-start)?\} " + re.escape(label) + r"\n:class: dropdown", text)
        assert start, f"exercise {label} has no solution hidden in a dropdown"
    for i, cell in enumerate(nb.cells):
        if "{solution-start}" in cell.source or "{solution-end}" in cell.source:
            assert is_solution(cell), f"cell {i}: gated solution cells must be tagged `solution`"
            assert cell.source.lstrip().startswith("```{solution-"), \
                f"cell {i}: a solution-start/-end cell holds the directive only (keep the exercise in its own cell)"


LEVELS = ("Understand", "Derive", "Build")


def _exercises(nb):
    """(level, title, label, index of the exercise's cell) for every exercise of ``nb``."""
    out = []
    for i, cell in enumerate(nb.cells):
        for m in re.finditer(r"\{exercise\} ?([^\n]*)\n:label: (\S+)", cell.source):
            level, _, title = m.group(1).partition(": ")
            out.append((level, title, m.group(2), i))
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_exercises_are_labelled_at_three_levels(path):
    found = _exercises(read(path))
    for level, title, label, _ in found:
        assert level in LEVELS and title, \
            f"{label}: the title must read 'Understand: ...', 'Derive: ...' or 'Build: ...'"
    levels = [level for level, *_ in found]
    assert "Derive" in levels and "Build" in levels, f"levels {levels}: want a derivation and a build task"
    assert levels.count("Understand") >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_checked_exercises_have_a_stub_and_a_registered_checker(path):
    """A build task, and every exercise with a checker, has a stub cell that calls its checker;
    the stub is left for the student and says "Not done yet" until it is filled in."""
    from attnlab.exercises import REGISTRY
    nb = read(path)
    for level, title, label, i in _exercises(nb):
        if level != "Build" and label not in REGISTRY:
            continue
        assert label in REGISTRY, f"build task {label} has no checker registered under its label"
        stub = nb.cells[i + 1]
        assert "stub" in stub.metadata.get("tags", []) and stub.cell_type == "code", \
            f"{label}: the cell after the exercise must be a code cell tagged `stub`"
        name = REGISTRY[label].__name__
        assert re.search(rf"\b{name}\(", stub.source), f"{label}: the stub must call {name}"
        assert "raise NotImplementedError" in stub.source or re.search(r"= \.\.\.", stub.source), \
            f"{label}: the stub must leave the work undone (raise NotImplementedError or `= ...`)"


def test_every_checker_belongs_to_an_exercise():
    from attnlab.exercises import REGISTRY
    labels = {label for p in NOTEBOOKS for *_, label, _ in _exercises(read(p))}
    assert set(REGISTRY) <= labels, sorted(set(REGISTRY) - labels)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_learning_target_is_asserted(path):
    nb = read(path)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not is_solution(c))
    assert re.search(r"^\s*target\(", code, re.M), \
        "the chapter's learning targets are asserted with attnlab.report.target (recorded, with a margin)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_prose_numbers_come_from_glue(path):
    """Every {glue:...} role in the prose names a value that a code cell of the chapter glues."""
    nb = read(path)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    glued = set(re.findall(r"""(?:glue|target)\(\s*f?["']([^"']+)["']""", code))
    patterns = [re.compile(re.sub(r"\{[^}]*\}", r"\\w+", g)) for g in glued]
    used = {k for c in nb.cells if c.cell_type == "markdown"
            for k in re.findall(r"\{glue(?::\w+)?\}`(\w+)", c.source)}
    missing = sorted(k for k in used if not any(p.fullmatch(k) for p in patterns))
    assert not missing, f"used in the prose but never glued: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_runs_on_one_thread(path):
    """Tiny models on a shared 2-core CPU: two threads per kernel, with the book build and nbval
    side by side, made one chapter take 1,000 s instead of 60 (threads waiting for each other)."""
    code = "\n".join(c.source for c in read(path).cells if c.cell_type == "code")
    assert re.search(r"^torch\.set_num_threads\(1\)", code, re.M), \
        "set torch.set_num_threads(1) in the imports cell, as every chapter does"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_training_uses_the_device(path):
    code = "\n".join(c.source for c in read(path).cells if c.cell_type == "code")
    assert re.search(r"\.to\(device\)|device=device", code), "nothing is sent to `device`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_citations_exist_in_the_bibliography(path):
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    text = "\n".join(c.source for c in read(path).cells if c.cell_type == "markdown")
    cited = {k.strip() for group in re.findall(r"\{cite[pt]?\}`([^`]+)`", text) for k in group.split(",")}
    assert cited, "a chapter cites the papers it teaches"
    assert cited <= keys, f"cited but not in references.bib: {cited - keys}"


def test_every_bib_entry_has_an_arxiv_id_or_is_pre_arxiv():
    bib = (ROOT / "book" / "references.bib").read_text()
    for entry in re.split(r"\n(?=@)", bib):
        m = re.match(r"@\w+\{([^,]+),", entry.strip())
        if not m:
            continue
        year = int(re.search(r"year\s*=\s*\{(\d{4})\}", entry).group(1))
        is_web_page = entry.lstrip().startswith(("@misc", "@online")) and re.search(r"\burl\s*=", entry)
        if year >= 2008 and not is_web_page:  # papers since arXiv became the norm carry their id
            no_arxiv = re.search(r"doi\s*=", entry) and re.search(r"note\s*=\s*\{No arXiv version\}", entry)
            assert re.search(r"eprint\s*=\s*\{[\d.]+\}", entry) or no_arxiv, f"{m.group(1)} has no arXiv eprint"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_student_edition_removes_solutions_and_keeps_exercises(path):
    original = read(path)
    n_solution = sum(is_solution(c) for c in original.cells)
    assert n_solution >= 3
    nb, removed = student_copy(read(path))
    assert removed == n_solution
    assert not any(is_solution(c) for c in nb.cells)
    text = "\n".join(c.source for c in nb.cells)
    assert "{solution" not in text
    assert text.count("{exercise}") == "\n".join(c.source for c in original.cells).count("{exercise}")


def test_no_downloads_in_notebooks_or_library():
    banned = re.compile(r"torchvision\.datasets|torch\.hub|load_state_dict_from_url|urlretrieve|requests\.get|"
                        r"pretrained=True|fetch_openml|hf_hub_download")
    for path in [*NOTEBOOKS, *(ROOT / "attnlab").glob("*.py")]:
        text = path.read_text()
        assert not banned.search(text), f"{path.name} downloads something: {banned.search(text).group(0)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_build_stubs_run_alone_and_say_not_done_yet(path, capsys):
    """The stub of a build task is self-contained: run on its own, unfilled, it reports
    "Not done yet" (this is what a student sees, and what the grader records)."""
    import torch
    for level, _, label, i in _exercises(read(path)):
        if level == "Build":
            exec(compile(read(path).cells[i + 1].source, label, "exec"), {"torch": torch})
            out = capsys.readouterr().out
            assert out.startswith("Not done yet."), f"{label}: the unfilled stub printed {out!r}"


def test_every_attnlab_package_is_installed():
    """`pip install .` (the notebooks' setup cell, Colab) ships every (sub)package of attnlab."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "attnlab").rglob("__init__.py")}
    assert found == listed, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(found)}"
