"""The built book, opened in headless Chromium with the network cut.

Needs the HTML that `make test` builds first (tools/build_book.py --force). Every request that is
not a local file is refused and recorded: the pages must typeset their math, render the widgets'
embedded state and move their static twins (jshtml animations) without any of them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].removeprefix("https://github.com/")

pytestmark = pytest.mark.rendered


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make test` (it builds the book before the tests)")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield b
        b.close()


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

    # Widgets render their embedded state through the local widget manager.
    n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if n_views:
        page.wait_for_selector(".jupyter-widgets", timeout=20_000)
        assert page.locator(".jupyter-widgets").count() >= n_views

    # Every static twin (a jshtml animation) changes its frame when its slider moves.
    sliders = page.locator('input[type="range"][id^="_anim_slider"]')
    assert sliders.count() >= 1, "no static twin (jshtml animation) on a chapter page"
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
    page.context.close()


def test_front_page_has_no_network_requests(browser):
    page, refused = open_offline(browser, HTML / "book" / "intro.html")
    assert "Attention" in page.title()
    assert refused == [], f"the page asked the network for {refused}"
    page.context.close()
