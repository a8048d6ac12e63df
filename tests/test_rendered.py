"""The built book, opened in headless Chromium with the network cut.

Needs the HTML that `make test` builds first (tools/build_book.py --force). Every request that is
not a local file is refused and recorded: the pages must typeset their math, render the widgets'
embedded state and move their static twins (jshtml animations) without any of them.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
from find_browser import ADVICE, find_browser  # noqa: E402  (the one place that finds Chrome)

CHROMIUM = find_browser()
REPO = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].removeprefix("https://github.com/")

pytestmark = pytest.mark.rendered


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make test` (it builds the book before the tests)")
    if CHROMIUM is None:
        pytest.fail(ADVICE)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield b
        b.close()


# Every chapter page has at least one figure that computes in the page (attnlab.live).
LIVE = CHAPTERS


def _widgets(chapter: str) -> int:
    """How many kernel widgets (``viz.interactive``) the chapter's notebook shows."""
    import nbformat

    cells = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", 4).cells
    return sum(len(re.findall(r"\bviz\.interactive\(", c.source)) for c in cells
               if c.cell_type == "code" and "solution" not in c.metadata.get("tags", []))

# Runs a live figure's checks: set its controls, let Vega recompute, read the weights it plots.
RUN_CHECKS = """
async (id) => {
  const view = window.attnlabLive.views[id];
  const checks = JSON.parse(document.getElementById(id).dataset.checks);
  const names = [];
  for (let i = 0; i < 60; i++) names.push("data_" + i, "source_" + i);
  const out = [];
  for (const check of checks) {
    for (const [name, value] of Object.entries(check.params)) view.signal(name, value);
    await view.runAsync();
    let got = null;
    for (const n of names) {
      let rows;
      try { rows = view.data(n); } catch (e) { continue; }
      if (rows.length && rows.length === check.values.length && check.field in rows[0]) {
        got = rows.slice().sort((a, b) => a[check.sort] - b[check.sort]).map(r => r[check.field]);
        break;
      }
    }
    out.push({params: check.params, expected: check.values, got: got});
  }
  return out;
}
"""

# Moves one bound control (range, checkbox or menu) of a live figure to another value.
MOVE = """
(el) => {
  if (el.type === "range") {
    const v = Number(el.value), max = Number(el.max), min = Number(el.min);
    el.value = v < max ? max : min;
  } else if (el.type === "checkbox") {
    el.checked = !el.checked;
  } else if (el.tagName === "SELECT") {
    el.selectedIndex = (el.selectedIndex + 1) % el.options.length;
  } else if (el.type === "radio") {
    el.checked = true;
  }
  el.dispatchEvent(new Event("input", {bubbles: true}));
  el.dispatchEvent(new Event("change", {bubbles: true}));
}
"""


# A control shown disabled must act on nothing: set its signal anyway, the plot must not change.
IDLE = r"""
async ([id, name]) => {
  const view = window.attnlabLive.views[id];
  const el = document.querySelector("#" + id + " .vega-bindings [name='" + name + "']");
  const svg = () => document.querySelector("#" + id + " svg").innerHTML
    .replace(/<defs>.*?<\/defs>/gs, "").replace(/gradient_[0-9]+/g, "gradient");
  const old = view.signal(name), before = svg();
  let v;
  if (el.type === "range") v = Number(old) < Number(el.max) ? Number(el.max) : Number(el.min);
  else if (el.type === "checkbox") v = !old;
  else v = [...el.options].map(o => o.value).find(x => x != old);
  view.signal(name, v);
  await view.runAsync();
  const after = svg();
  view.signal(name, old);
  await view.runAsync();
  return before === after;
}
"""


def _drawn(page, fig_id) -> str:
    """The figure's SVG, less what Vega adds when it redraws a legend unchanged (a copy of its
    gradient under a new id)."""
    svg = re.sub(r"<defs>.*?</defs>", "", page.locator(f"#{fig_id} svg").first.inner_html(),
                 flags=re.S)
    return re.sub(r"gradient_\d+", "gradient", svg)


def _controls(page, fig_id):
    return page.locator(f"#{fig_id} .vega-bindings input, #{fig_id} .vega-bindings select")


def _every_control_acts(page, fig_id, state: str, keep: str | None = None) -> None:
    """Each control (but ``keep``) moves the plot, or is disabled, says why, and indeed acts
    on nothing."""
    controls = _controls(page, fig_id)
    for j in range(controls.count()):
        control = controls.nth(j)
        kind = control.get_attribute("type")
        if kind == "radio" and control.is_checked():
            continue
        name = control.get_attribute("name")
        if name == keep:
            continue
        if control.is_disabled():
            why = page.locator(f"#{fig_id} .vega-bind:has([name='{name}']) .attnlab-why")
            assert why.count() == 1 and why.inner_text().strip() and why.is_visible(), \
                f"{fig_id}: control {name!r} is disabled {state} without a visible reason"
            assert page.evaluate(IDLE, [fig_id, name]), \
                f"{fig_id}: control {name!r} is disabled {state}, but it does change the plot"
            continue
        before = _drawn(page, fig_id)
        control.evaluate(MOVE)
        page.wait_for_timeout(150)
        assert _drawn(page, fig_id) != before, \
            f"{fig_id}: moving control {name!r} {state} changed nothing"


def check_live_figures(page) -> int:
    """Every live figure renders offline, equals Python, and every control moves the plot for
    every choice of the menus and check boxes (or is disabled, with a visible reason)."""
    figures = page.locator(".attnlab-live")
    n = figures.count()
    if not n:
        return 0
    page.wait_for_function(f"() => window.attnlabLive && Object.keys(window.attnlabLive.views).length >= {n}",
                           timeout=30_000)
    for i in range(n):
        fig_id = figures.nth(i).get_attribute("id")
        results = page.evaluate(RUN_CHECKS, fig_id)
        assert results, f"live figure {fig_id} carries no check against Python"
        for r in results:
            assert r["got"] is not None, f"{fig_id}: no plotted data matches the check {r['params']}"
            assert len(r["got"]) == len(r["expected"])
            gap = max(abs(a - b) for a, b in zip(r["got"], r["expected"]))
            assert gap < 1e-6, f"{fig_id}: the page computes {r['got']}, Python {r['expected']}"
        controls = _controls(page, fig_id)
        assert controls.count() >= 1, f"live figure {fig_id} has no control"
        _every_control_acts(page, fig_id, "as the checks left it")
        choices = page.locator(f"#{fig_id} .vega-bindings select, "
                               f"#{fig_id} .vega-bindings input[type=checkbox]")
        for j in range(choices.count()):
            choice = choices.nth(j)
            name = choice.get_attribute("name")
            states = (choice.locator("option").count() if choice.evaluate("e => e.tagName")
                      == "SELECT" else 2)
            for _ in range(states):
                if choice.is_disabled():
                    break
                choice.evaluate(MOVE)
                page.wait_for_timeout(100)
                value = choice.evaluate("e => e.type === 'checkbox' ? e.checked : e.value")
                _every_control_acts(page, fig_id, f"with {name} = {value!r}", keep=name)
    return n


def open_offline(browser, page_path: Path):
    """Open a built page with every non-file request aborted; return (page, refused URLs)."""
    context = browser.new_context()
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith(("file://", "data:", "blob:")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda e: page.js_errors.append(str(e)))
    page.on("console", lambda m: page.js_errors.append(m.text) if m.type == "error" else None)
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_timeout(300)
    return page, refused


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_works_offline(browser, chapter):
    path = HTML / "notebooks" / f"{chapter}.html"
    assert path.exists(), f"{path} was not built"
    page, refused = open_offline(browser, path)

    # Math is typeset by the local MathJax (no raw TeX delimiters left in the text).
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("() => MathJax.startup.promise")
    n_math = page.locator("mjx-container").count()
    assert n_math > 0, "no typeset math on the page"
    assert "$$" not in page.locator("article").inner_text()

    # No dead controls: kernel-only widgets are left out of the rendered page.
    assert page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count() == 0
    assert page.locator(".jupyter-widgets").count() == 0

    # Figures whose controls compute in the page, checked against Python's numbers.
    n_live = check_live_figures(page)
    if chapter in LIVE:
        assert n_live >= 1, "no figure whose controls compute in the page"

    # Every kernel widget (viz.interactive) has its static twin on the page, and every static
    # twin changes its frame when any of its controls moves: a jshtml animation (one
    # parameter), or one control per parameter (several).
    sliders = page.locator('input[type="range"][id^="_anim_slider"]')
    twins = page.locator(".attnlab-twin")
    assert sliders.count() + twins.count() >= _widgets(chapter), \
        "a widget of the notebook has no static twin on the page"
    for i in range(twins.count()):
        img, fields = twins.nth(i).locator("img"), twins.nth(i).locator("input, select")
        assert fields.count() >= 2, f"twin {i} has fewer controls than its widget"
        for j in range(fields.count()):
            before = img.get_attribute("src")
            fields.nth(j).evaluate(MOVE)
            assert img.get_attribute("src") != before, f"twin {i}: control {j} changed nothing"
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        uid = slider.get_attribute("id").removeprefix("_anim_slider")
        img = page.locator(f"#_anim_img{uid}")
        before = img.get_attribute("src")
        last = int(slider.get_attribute("max"))
        slider.evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", last)
        after = img.get_attribute("src")
        assert before and after and before != after, f"static twin {i} did not change its frame"

    # The Colab launch button opens this very notebook from the repository set in _config.yml.
    colab = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{chapter}.ipynb"
    assert page.locator(f'a[href="{colab}"]').count() >= 1, f"no Colab button linking {colab}"

    assert refused == [], f"the page asked the network for {refused}"
    assert page.js_errors == [], f"JavaScript errors on the page: {page.js_errors}"
    page.context.close()


def test_front_page_has_no_network_requests(browser):
    page, refused = open_offline(browser, HTML / "book" / "intro.html")
    assert "Attention" in page.title()
    assert refused == [], f"the page asked the network for {refused}"
    page.context.close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_solution_passes_its_checker_and_every_stub_waits(chapter):
    """In the built page each checked exercise shows its unfilled stub ("Not done yet.") and a
    solution whose checker says "Correct!"; no checker output anywhere says "Not yet."."""
    import re

    import nbformat
    from attnlab.exercises import REGISTRY

    text = "\n".join(c.source for c in nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", 4).cells)
    checked = [label for label in re.findall(r"\{exercise\}[^\n]*\n:label: (\S+)", text) if label in REGISTRY]
    page = (HTML / "notebooks" / f"{chapter}.html").read_text()
    assert "Not yet. " not in page, "a solution's checker printed 'Not yet.'"
    assert page.count("Not done yet. ") == len(checked), checked
    assert page.count("Correct! ") >= len(checked), checked


# Blocks that would scroll sideways: code, printed output, display math, tables in the article.
OVERFLOW = """() => {
  const sel = 'pre, mjx-container[display="true"], div.math, .cell_output .output, article table';
  const out = [];
  for (const el of document.querySelectorAll('article ' + sel.split(', ').join(', article '))) {
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      out.push(el.tagName + ': ' + (el.innerText || '').split('\\n')[0].slice(0, 80));
  }
  const code = [...document.querySelectorAll('article div.cell_input pre')].map(e => e.innerText);
  return {overflow: out, code: code};
}"""


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_reads_like_a_book(browser, chapter):
    """No block scrolls sideways at 1280 or 1920 px, and no build machinery is shown: no NBVAL
    markers, no glue(...) or target(...) lines among the code."""
    for width in (1280, 1920):
        context = browser.new_context(viewport={"width": width, "height": 1000})
        page = context.new_page()
        page.goto((HTML / "notebooks" / f"{chapter}.html").as_uri(), wait_until="load")
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        page.wait_for_timeout(300)
        found = page.evaluate(OVERFLOW)
        context.close()
        assert not found["overflow"], f"{chapter} at {width} px: {found['overflow']}"
        machinery = [line for block in found["code"] for line in block.splitlines()
                     if "NBVAL" in line or line.lstrip().startswith(("glue(", "target("))]
        assert not machinery, f"{chapter}: build machinery on the page: {machinery[:3]}"


def test_build_lines_leave_with_the_comments_that_speak_of_them():
    """A comment right above a glue/target statement, or closing the cell after one, goes with
    it; a comment above kept code, or separated by a blank line, stays."""
    from sphinx_page_fixes import build_only_lines

    source = "\n".join([
        "x = 1  # kept",                  # 0
        "# why the target below holds",   # 1 dropped (right above a target)
        "target('a', x, 0)",              # 2 dropped
        "# about y",                      # 3 kept (above kept code)
        "y = 2",                          # 4
        "# about the glue, after a gap",  # 5 kept (a blank line between)
        "",                               # 6
        "glue('b', y)",                   # 7 dropped
        "# closing words on the targets",  # 8 dropped (ends the cell after a dropped line)
    ])
    assert build_only_lines(source) == {1, 2, 7, 8}
    assert build_only_lines("y = 2\n# closing words on y") == set()
