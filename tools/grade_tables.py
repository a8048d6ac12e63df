"""The grader's tables: every cell made safe to open in a spreadsheet or to render as Markdown.

A CSV cell that would start with ``=``, ``+``, ``-`` or ``@`` (a formula) starts with ``'``;
control characters, line breaks and invisible direction marks become spaces; long texts are
cut; Markdown cells escape HTML, pipes, code spans and links.
"""
from __future__ import annotations

import contextlib
import csv
import html
import os
import re
import tempfile
from pathlib import Path

FIELDS = ["student", "notebook", "exercise", "passed", "points", "message", "seconds"]
TABLES = ("grades.csv", "grades.md", "grades-moodle.csv")


def sanitise(value) -> str:
    """``value`` as text that any UTF-8 writer accepts: lone surrogates (a folder name's broken
    bytes, a student's ``chr(0xD800)``) and anything else unencodable become U+FFFD."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a student's object whose str() fails
        text = "(unprintable)"
    text = re.sub(r"[\ud800-\udfff]", "\ufffd", text)
    return text.encode("utf-8", "replace").decode("utf-8", "replace")


def clean_row(r: dict) -> dict:
    """A row with exactly the table's fields, each text sanitised (yes/no and points kept)."""
    out = {}
    for k in FIELDS:
        v = r.get(k, "")
        out[k] = v if isinstance(v, bool) or k == "points" and isinstance(v, int) \
            else sanitise(v)
    return out


def _plain(value, limit: int = 2000) -> str:
    """Text without control characters or broken UTF-8, at most ``limit`` characters."""
    text = sanitise(value)
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]",
                  " ", text)                      # controls, bidi overrides, invisible marks
    return text if len(text) <= limit else text[:limit - 1] + "…"


def csv_cell(value, limit: int = 2000) -> str:
    """A cell no spreadsheet runs as a formula: a leading = + - @ (or tab, CR) gets a quote."""
    text = _plain(value, limit)
    return "'" + text if text.lstrip()[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def md_cell(value, limit: int = 500) -> str:
    """A Markdown table cell that is text: HTML, pipes, code spans and links escaped."""
    text = html.escape(_plain(value, limit), quote=False)
    return re.sub(r"([\\|`*_\[\]])", r"\\\1", text)


def write_tables(rows: list[dict], students: list[str], out: Path, *, isolated: bool,
                 limits, timeout: float) -> None:
    """``grades.csv`` (one row per student, notebook and exercise), ``grades.md`` (the same, to
    read, under a line on how the notebooks ran) and ``grades-moodle.csv`` (one row per student
    folder, one column of points per exercise, for Moodle's grade import). Each is written to a
    temporary file in ``out`` and then renamed, so a table is either whole or absent."""
    with _atomic(out / "grades.csv") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: csv_cell("yes" if r[k] is True else "no" if r[k] is False
                                         else r[k]) for k in FIELDS})
    columns = list(dict.fromkeys((r["notebook"], r["exercise"]) for r in rows
                                 if r["points"] != ""))
    points = {(r["student"], r["notebook"], r["exercise"]): int(r["points"])
              for r in rows if r["points"] != ""}
    with _atomic(out / "grades-moodle.csv") as f:
        writer = csv.writer(f)
        writer.writerow(["username"] + [csv_cell(f"{n} {e}") for n, e in columns] + ["total"])
        for s in students:
            got = [points.get((s, n, e), 0) for n, e in columns]
            writer.writerow([csv_cell(s)] + got + [sum(got)])
    isolation = (
        "each notebook ran in a bubblewrap sandbox (no network, nothing of the machine but "
        "Python, its packages and attnlab, read-only; its own PID namespace, killed as a whole "
        "at the time limit), and each student's function ran in a sandbox without attnlab"
        if isolated else
        "WARNING: bubblewrap (bwrap, 0.6 or later) is not available here (run `make sandbox`), "
        "so the notebooks ran WITHOUT network or file-system isolation: each in its own folder, "
        "under the time and resource limits only")
    lines = ["# Grades", "",
             f"Time limit per notebook: {timeout:.0f} s; {isolation}. Limits per process: "
             f"{limits.memory / 2**30:.0f} GiB of memory, files of {limits.file_size / 2**20:.0f}"
             f" MiB, {limits.processes} processes, a home of {limits.disk / 2**20:.0f} MiB."
             + (" WARNING: the grader runs as root, and Linux does not apply the process limit "
                "to root: run it as an ordinary user." if os.geteuid() == 0 else ""),
             "", "The last answer to each exercise counts.", "",
             "| student | notebook | exercise | passed | points | message | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        passed = "yes" if r["passed"] else "no"
        lines.append("| " + " | ".join(md_cell(v) for v in (
            r["student"], r["notebook"], r["exercise"], passed, r["points"], r["message"],
            r["seconds"])) + " |")
    with _atomic(out / "grades.md") as f:
        f.write("\n".join(lines) + "\n")


def remove_tables(out: Path) -> None:
    """Remove the tables of an earlier run, so that none of them can pass for this run's."""
    for name in TABLES:
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def _atomic(path: Path):
    """A text file written under a temporary name in its folder and renamed into place only
    once it is complete (removed if writing it fails)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)                 # as open() would have made it
        with open(fd, "w", newline="", encoding="utf-8", errors="replace") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
