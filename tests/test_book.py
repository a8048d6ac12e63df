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
    exercises = re.findall(r"\{exercise\}\n:label: (\S+)", text)
    assert len(exercises) >= 3, f"{len(exercises)} exercises, want at least 3"
    for label in exercises:
        start = re.search(r"\{solution(?:-start)?\} " + re.escape(label) + r"\n:class: dropdown", text)
        assert start, f"exercise {label} has no solution hidden in a dropdown"
    for i, cell in enumerate(nb.cells):
        if "{solution-start}" in cell.source or "{solution-end}" in cell.source:
            assert is_solution(cell), f"cell {i}: gated solution cells must be tagged `solution`"
            assert cell.source.lstrip().startswith("```{solution-"), \
                f"cell {i}: a solution-start/-end cell holds the directive only (keep the exercise in its own cell)"


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
