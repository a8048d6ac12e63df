"""Measure the built chapter pages as a reader gets them: what scrolls sideways, what of the
build shows, how heavy each page is; and save full-page screenshots to look at.

    python tools/page_report.py SHOTS_DIR                      # the book in _build/html
    python tools/page_report.py SHOTS_DIR --html path/to/_build/html --shots 03 07 16

Each chapter page (``notebooks/*.html``) is opened in headless Chromium (found by
tools/find_browser.py) with every request that is not a local file refused, at a window 1280
and 1920 px wide. Printed per chapter and width:

* **overflow**: blocks wider than their box, which scroll sideways: code cells (``code``),
  printed output (``output``) and display math (``math``); and figures (images, live figures)
  wider than the text column (``fig``);
* **markers**: lines of the shown code that exist for the build (``NBVAL`` markers,
  ``glue(...)`` and ``target(...)`` calls);
* **weight** (once per chapter, in KB of 1,000 bytes): the page's HTML file (with what it
  embeds: base64 images and animations, the live figures' data), of which ``embedded`` is the
  ``data:`` URIs and ``live`` the live figures' specs; plus ``images``, the files under
  ``_images/`` the page shows. Not counted: what every page shares and a browser caches once
  (the theme's CSS and scripts, MathJax, Vega, fonts under ``_static/``).

Screenshots: one full-page PNG per chosen chapter at 1280 px (``NN_1280.png``), and the same
page cut into pieces of 2,400 px (``NN_1280_partK.png``), small enough to read.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from find_browser import ADVICE, find_browser  # noqa: E402

WIDTHS = (1280, 1920)
PIECE = 2400  # px of page per screenshot piece

MEASURE = """() => {
  const art = document.querySelector('article') || document.body;
  const wide = el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
  const count = sel => [...art.querySelectorAll(sel)].filter(wide).length;
  const column = art.getBoundingClientRect().width;
  const figs = [...art.querySelectorAll('.cell_output img, .attnlab-live svg, .attnlab-twin img')]
    .filter(el => el.getBoundingClientRect().width > column + 1).length;
  const code = [...art.querySelectorAll('div.cell_input pre')]
    .filter(el => el.offsetParent !== null).map(e => e.innerText);
  return {code: count('div.cell_input pre, div.highlight pre'),
          output: count('.cell_output pre, .cell_output .output'),
          math: count('mjx-container[display="true"], div.math'),
          fig: figs, shown_code: code, height: document.documentElement.scrollHeight};
}"""


def markers(code_blocks: list[str]) -> int:
    return sum(1 for block in code_blocks for line in block.splitlines()
               if "NBVAL" in line or line.lstrip().startswith(("glue(", "target(")))


def weight(page: Path, html_root: Path) -> dict[str, float]:
    """KB of the page's HTML, of what it embeds, and of the image files it shows."""
    text = page.read_text(errors="replace")
    # base64 data, also where an animation's script breaks it into lines ending in a backslash
    embedded = sum(len(m) for m in re.findall(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\\\n]+",
                                               text))
    live = sum(len(m) for m in re.findall(
        r'<script type="application/json" id="live-[^"]+-spec">(.*?)</script>', text, re.S))
    images = set()
    for src in re.findall(r'<img[^>]+src="([^"]+)"', text):
        if src.startswith("data:") or urlparse(src).scheme:
            continue
        path = (page.parent / unquote(src.split("#")[0])).resolve()
        if "_static" not in path.parts and path.is_file():
            images.add(path)
    image_bytes = sum(p.stat().st_size for p in images)
    html = page.stat().st_size
    return {"html": html / 1e3, "embedded": embedded / 1e3, "live": live / 1e3,
            "images": image_bytes / 1e3, "total": (html + image_bytes) / 1e3}


def open_page(context, path: Path):
    page = context.new_page()
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
        ("file://", "data:", "blob:")) else r.abort())
    page.goto(path.as_uri(), wait_until="load")
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    n_live = page.locator(".attnlab-live").count()
    if n_live:
        try:
            page.wait_for_function(
                f"() => window.attnlabLive && Object.keys(window.attnlabLive.views).length "
                f">= {n_live}", timeout=20_000)
        except Exception:  # report the page as it is; the rendered test names the failure
            pass
    page.wait_for_timeout(500)
    return page


def screenshots(page, out: Path, stem: str) -> list[Path]:
    full = out / f"{stem}.png"
    page.screenshot(path=str(full), full_page=True)
    height = page.evaluate("() => document.documentElement.scrollHeight")
    width = page.viewport_size["width"]
    pieces = []
    for k, top in enumerate(range(0, height, PIECE)):
        piece = out / f"{stem}_part{k + 1}.png"
        page.screenshot(path=str(piece), full_page=True,
                        clip={"x": 0, "y": top, "width": width,
                              "height": min(PIECE, height - top)})
        pieces.append(piece)
    return [full, *pieces]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shots_dir", type=Path, help="folder for the screenshots")
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html",
                        help="the built book (default: _build/html)")
    parser.add_argument("--shots", nargs="*", default=None,
                        help="chapter numbers to photograph (default: 03 07 16, or 05 "
                             "where there is no 16)")
    args = parser.parse_args()
    args.html = args.html.resolve()
    pages = sorted((args.html / "notebooks").glob("[0-9][0-9]_*.html"))
    if not pages:
        sys.exit(f"no chapter pages under {args.html / 'notebooks'}: build the book first")
    browser_path = find_browser()
    if browser_path is None:
        sys.exit(ADVICE)
    numbers = [p.name[:2] for p in pages]
    chosen = args.shots if args.shots is not None else \
        ["03", "07", "16" if "16" in numbers else "05"]
    args.shots_dir.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    print("overflow = blocks that scroll sideways (code / output / display math) and figures "
          "wider than the column;\nmarkers = build lines shown; weight in KB: the HTML (of it: "
          "data: URIs, live-figure specs) + the page's own image files")
    head = (f"{'chapter':32} {'overflow 1280':>15} {'overflow 1920':>15} {'markers':>7} "
            f"{'HTML':>7} {'(data:':>7} {'live)':>6} {'images':>7} {'total':>7}")
    print(head + "\n" + "-" * len(head))
    totals = {"overflow": 0, "markers": 0, "total": 0.0}
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        for path in pages:
            cells, shown = [], 0
            for width in WIDTHS:
                context = browser.new_context(viewport={"width": width, "height": 1000})
                page = open_page(context, path)
                m = page.evaluate(MEASURE)
                cells.append(f"{m['code']}/{m['output']}/{m['math']}/{m['fig']}")
                totals["overflow"] += m["code"] + m["output"] + m["math"] + m["fig"]
                shown = max(shown, markers(m["shown_code"]))
                if width == 1280 and path.name[:2] in chosen:
                    saved += screenshots(page, args.shots_dir, f"{path.stem[:2]}_{width}")
                context.close()
            w = weight(path, args.html)
            totals["markers"] += shown
            totals["total"] += w["total"]
            print(f"{path.stem[:32]:32} {cells[0]:>15} {cells[1]:>15} {shown:7d} "
                  f"{w['html']:7.0f} {w['embedded']:7.0f} {w['live']:6.0f} {w['images']:7.0f} "
                  f"{w['total']:7.0f}")
        browser.close()
    print("-" * len(head))
    print(f"{len(pages)} chapter pages: {totals['overflow']} overflowing blocks or figures "
          f"(both widths), {totals['markers']} build lines shown, {totals['total']:.0f} KB "
          f"in all; overflow columns read code/output/math/fig")
    print("screenshots:", ", ".join(str(s) for s in saved) if saved else "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
