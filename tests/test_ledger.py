"""The claim ledger: a comparative sentence in a chapter stands beside a measured number.

A sentence that says *beats*, *better*, *near chance*, *stays*, *fails*, ... about a result must
sit in a paragraph (or list item) that quotes a glued number (``{glue:text}`...```), which the
chapter computes and, for a claim, asserts as a learning target: see :mod:`attnlab.report` and
``book/robustness.md``. Sentences that report a paper carry a ``{cite}`` and are exempt;
questions, headings, exercises and their solutions are not claims. Everything else that uses
such a word is a definition or an argument, not a measurement, and is listed in ``ALLOWED``
with the reason, so that a new unbacked claim cannot slip in unnoticed.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

COMPARATIVE = re.compile(
    r"\b(beats?|beaten|better|worse|outperforms?|near chance|about as well|stays?|stayed|"
    r"shrinks?|shrank|fails?|failed|stable|more than|less than|higher|lower|faster|slower|"
    r"wins?|won|ahead|behind|improves?|helps?|hurts?|level with|as well as)\b", re.I)

# (chapter number, a piece of the sentence): why it needs no measured number beside it.
ALLOWED = {
    ("01", "so that the answer gets better"): "what training does, by definition",
    ("01", "does not change which key wins"): "a property of the argmax",
    ("01", "the largest key always wins"): "a property of the dot product, shown by the formula",
    ("02", "\"dog bites man\" and \"man bites dog\""): "permutation equivariance, an argument",
    ("03", "when do several heads actually help?"): "a question the chapter then measures",
    ("03", "copy the bit one step back"): "the definition of a task",
    ("03", "The sixteen pairs stay apart only if"): "an argument about one weighted average",
    ("04", "design a task on which a gate helps"): "a learning goal",
    ("05", "a network that cannot choose where to look fails"): "introduction; backed by ch5_baseline_far",
    ("05", "a square window that may move and shrink"): "the paper's definition of the transform",
    ("05", "a classifier behind global pooling is nearly blind"): "an argument about the gradient at the identity",
    ("05", "*Stay put* shrinks the whole 28x28 page"): "the definition of a baseline",
    ("08", "why a decoder that reads a fixed-size summary"): "a learning goal; backed by ch8_gap_attention_summary",
    ("08", "behind a start token"): "the definition of teacher forcing",
    ("08", "tells where it still fails:"): "introduces the figure below it",
    ("08", "If attention wins only against the uniform mean"): "states what the comparison can show",
    ("09", "which cheap forms fail a task"): "a learning goal; backed by ch9_separable_pairs and ch9_axial_pairs",
    ("11", "changes nothing on average"): "an argument about the REINFORCE estimator",
    ("11", "did better than expected"): "the definition of the learned baseline",
    ("12", "trains worse than a stack of"): "a learning goal; backed by ch12_loss_gap",
    ("12", "every module can only *shrink*"): "an argument: the mask lies between 0 and 1",
    ("12", "so the shrinking does not compound"): "an argument; backed by ch12_grad_ratio",
    ("12", "the faster version of YOLOv5"): "a name (the 'f' of C2f)",
    ("13", "taught only there is *worse*"): "a learning goal; backed by ch13_alone_masked_worse",
    ("13", "where its class wins the softmax"): "the definition of the coupled head's mask",
    ("13", "at most one of them can win the pixel"): "a property of the softmax",
    ("14", "the small one shrinks to a smudge"): "what resizing does",
    ("15", "the map behind every word"): "a figure of speech, not a comparison",
}


def _clean(markdown: str) -> str:
    markdown = re.sub(r"```.*?```", " ", markdown, flags=re.S)        # code and directives
    markdown = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)      # display math
    markdown = re.sub(r"\$[^$]*\$", "X", markdown)                    # inline math
    return "\n".join(line for line in markdown.splitlines() if not line.lstrip().startswith("#"))


def _units(markdown: str):
    """Paragraphs and list items."""
    return re.split(r"\n\s*\n|\n(?=\s*(?:[-*]|\d+\.)\s)", _clean(markdown))


def _sentences(unit: str):
    return [s for s in re.split(r"(?<=[.;!?])\s+(?=[A-Z(*`{\"])", " ".join(unit.split())) if s]


def unbacked(path: Path):
    """(cell index, sentence) for every comparative sentence with no number beside it."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if (cell.cell_type != "markdown" or "solution" in tags
                or "{exercise-start}" in cell.source or "{solution-start}" in cell.source):
            continue
        for unit in _units(cell.source):
            if "{glue:" in unit:
                continue
            for sentence in _sentences(unit):
                if sentence.endswith("?") or "{cite}" in sentence:
                    continue
                if COMPARATIVE.search(sentence):
                    found.append((i, sentence))
    return found


def _allowed(chapter: str, sentence: str) -> bool:
    return any(ch == chapter and piece in sentence for ch, piece in ALLOWED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_comparative_sentence_stands_beside_a_number(path):
    chapter = path.stem[:2]
    missing = [(i, s) for i, s in unbacked(path) if not _allowed(chapter, s)]
    assert not missing, (
        f"{path.name}: comparative sentences with no glued number in their paragraph (quote "
        "the measured number, back it with a target, rewrite the sentence to what the data "
        "show, or, for a definition or an argument, add it to ALLOWED with the reason):\n"
        + "\n".join(f"  cell {i}: {s}" for i, s in missing))


def test_every_allowed_sentence_still_exists():
    """An entry whose sentence was rewritten or cut must go, or the list grows stale."""
    text = {p.stem[:2]: " ".join(" ".join(c.source.split())
                                 for c in nbformat.read(p, as_version=4).cells)
            for p in NOTEBOOKS}
    stale = [(ch, piece) for ch, piece in ALLOWED if piece not in text.get(ch, "")]
    assert not stale, f"ALLOWED entries that match no sentence any more: {stale}"


def test_the_detector_finds_an_unbacked_claim_and_accepts_a_glued_one(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("The gated model beats the plain one.\n\n"
                                              "It reaches {glue:text}`x:.2f`, better than the "
                                              "plain one.\n\nDoes it help?\n\n"
                                              "The paper found it better {cite}`a`.")]
    path = tmp_path / "00_t.ipynb"
    nbformat.write(nb, path)
    assert [s for _, s in unbacked(path)] == ["The gated model beats the plain one."]
