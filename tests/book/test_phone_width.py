"""The built book on a phone: a 390 px wide viewport in headless Chromium.

No page is wider than the screen (a long inline path wraps, a wide output or table scrolls in
its own box). Three pages are checked closely: the lesson with the widest display equation, an
exercise page with a table, and a lesson with a slider explorer. A display equation too wide for
the column scrolls inside its own box, from its left end, and shows a shadow where more of it is
hidden; an exercise table fits the screen inside its scrollable wrapper; a slider is wide enough
that one arrow-key press moves it by one step and a small tap beside its thumb by a small amount.
On every page with maths, no formula, display or inline, is cut off at the screen's edge: it fits,
or a box within the screen scrolls over it (inline maths wider than the column is made a line of
its own that scrolls, by ``_static/mlmcourse_wide_maths.js``).
Screenshots go to ``artifacts/screenshots/phone__*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS
from test_browser import WAIT_FOR_MATH, WIDGETS_RENDERED

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
TAP_OFFSET_PX = 6  # a small tap: this far to the right of the thumb's centre
SMALL_SHARE = 0.05  # ... may move the slider by at most this share of its range

_DISPLAY_MATH = re.compile(r'<div class="math[^"]*">(.*?)</div>', re.S)


def _longest_equation(html: str) -> int:
    return max((len(m) for m in _DISPLAY_MATH.findall(html)), default=0)


def _pick_pages() -> dict[str, str]:
    """The three pages to check, chosen from the built book (so that rewritten lessons stay
    covered): {"equation": ..., "table": ..., "slider": ...}, relative to _build/html."""
    if not HTML.is_dir():
        return {}
    lessons = {p: p.read_text(encoding="utf-8") for p in (HTML / "notebooks").glob("*.html")}
    lessons = dict(sorted(lessons.items()))
    exercises = sorted((HTML / "book" / "exercises").glob("*.html"))
    picked = {}
    if lessons:
        widest = max(lessons, key=lambda p: _longest_equation(lessons[p]))
        picked["equation"] = widest
        sliders = [p for p, text in lessons.items() if "mlm-softmax-explorer" in text]
        sliders = sliders or [p for p, text in lessons.items() if "mlm-masking-sampler" in text]
        if sliders:
            picked["slider"] = sliders[0]
    tables = [p for p in exercises if "<table" in p.read_text(encoding="utf-8")]
    if tables:
        picked["table"] = tables[0]
    return {k: v.relative_to(HTML).as_posix() for k, v in picked.items()}



@pytest.fixture(scope="module")
def phone(
    serve: Callable[[Path], str], unavailable: Callable[[str], None]
) -> Iterator[Callable[[str], object]]:
    """``phone(page)`` opens a built page at 390 px, offline, typeset, widgets rendered."""
    if not (HTML / "index.html").is_file():
        unavailable(f"the book is not built ({HTML} is missing): run `make book` first")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
    from playwright.sync_api import sync_playwright

    base = serve(HTML)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True)

        def offline(route: object) -> None:
            url = urlsplit(route.request.url)
            if url.scheme in ("data", "blob") or url.hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                route.abort()

        context.route("**/*", offline)

        def open_page(name: str) -> object:
            page = context.new_page()
            page.goto(base + name, wait_until="domcontentloaded")
            page.evaluate(WAIT_FOR_MATH)
            page.wait_for_function(WIDGETS_RENDERED, timeout=20_000)
            page.wait_for_timeout(200)  # layout after MathJax's last pass
            return page

        yield open_page
        context.close()
        browser.close()


PAGE_WIDTH = "() => document.scrollingElement.scrollWidth"
# Every display equation's scroll box: the theme makes `div.math > mjx-container` scroll; a
# stylesheet may instead make `div.math` itself the box. What it holds, how it scrolls, its cue,
# and whether the equation's left end can be reached (a centred or right-aligned equation wider
# than its box would hang out to the left, where no scrolling reaches).
SCROLLER = """(box) => {
  const inner = box.querySelector('mjx-container[display="true"]');
  return ['auto', 'scroll'].includes(getComputedStyle(inner).overflowX) ? inner : box;
}"""
EQUATIONS = f"""() => [...document.querySelectorAll('div.math')]
  .filter((box) => box.querySelector('mjx-container[display="true"]'))
  .map((box) => {{
    const scroller = ({SCROLLER})(box);
    const style = getComputedStyle(scroller);
    const rect = scroller.getBoundingClientRect();
    const math = box.querySelector('mjx-math').getBoundingClientRect();
    return {{ client: scroller.clientWidth, scroll: scroller.scrollWidth, right: rect.right,
             hangsLeft: rect.left - math.left, scrollLeft: scroller.scrollLeft,
             overflowX: style.overflowX, background: style.backgroundImage }};
  }})"""
WIDEST_EQUATION = f"""() => [...document.querySelectorAll('div.math')]
  .filter((box) => box.querySelector('mjx-container[display="true"]'))
  .map({SCROLLER})
  .reduce((a, b) => (b.scrollWidth - b.clientWidth > a.scrollWidth - a.clientWidth ? b : a))"""
SHOW_WIDEST_EQUATION = f"() => ({WIDEST_EQUATION})().scrollIntoView({{ block: 'center' }})"
SCROLL_WIDEST_EQUATION = f"""() => {{
  const box = ({WIDEST_EQUATION})();
  box.scrollLeft = box.scrollWidth;
  return box.scrollLeft;
}}"""
TABLES = """() => [...document.querySelectorAll('article table')].map((table) => {
  let box = table.parentElement;
  while (box && box !== document.body && !['auto', 'scroll'].includes(getComputedStyle(box)
      .overflowX)) box = box.parentElement;
  const scrollable = box && box !== document.body;
  return { table: table.getBoundingClientRect().width,
           scrollable, boxClass: scrollable ? box.className : '',
           boxRight: scrollable ? box.getBoundingClientRect().right : null,
           boxClient: scrollable ? box.clientWidth : null,
           boxScroll: scrollable ? box.scrollWidth : null };
})"""


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"phone__{name}.png"), full_page=False)


def _no_horizontal_overflow(page: object, name: str) -> None:
    width = page.evaluate(PAGE_WIDTH)
    assert width <= PHONE["width"] + 1, (
        f"{name}: the page is {width} px wide at a {PHONE['width']} px viewport; something "
        "(an equation, a table, an output) pushes the page sideways instead of scrolling in a box"
    )


@pytest.fixture(scope="module")
def pages(phone: Callable[[str], object]) -> dict[str, str]:
    return _pick_pages()


def _page(pages: dict[str, str], kind: str) -> str:
    if kind not in pages:
        pytest.fail(f"the built book has no {kind} page to check at phone width: {pages}")
    return pages[kind]


def test_wide_equations_scroll_in_their_box_with_a_cue(
    phone: Callable[[str], object], pages: dict[str, str]
) -> None:
    name = _page(pages, "equation")
    page = phone(name)
    _no_horizontal_overflow(page, name)
    equations = page.evaluate(EQUATIONS)
    wide = [e for e in equations if e["scroll"] > e["client"] + 1]
    assert wide, f"{name}: expected its widest display equation to be wider than a phone"
    for e in equations:
        assert e["right"] <= PHONE["width"] + 1, f"{name}: an equation box sticks out: {e}"
    for e in wide:
        assert e["overflowX"] in ("auto", "scroll"), f"{name}: a wide equation cannot scroll: {e}"
        assert e["scrollLeft"] == 0 and e["hangsLeft"] <= 1, (
            f"{name}: a wide equation starts left of its box, where scrolling cannot reach: {e}"
        )
        assert "gradient" in e["background"], f"{name}: a wide equation shows no scroll cue: {e}"
    page.evaluate(SHOW_WIDEST_EQUATION)
    _shot(page, "equation_start")  # the shadow on the right says: more to the right
    assert page.evaluate(SCROLL_WIDEST_EQUATION) > 0, f"{name}: the equation box did not scroll"
    _shot(page, "equation_end")
    _no_horizontal_overflow(page, name)


def test_tables_scroll_inside_their_wrapper(
    phone: Callable[[str], object], pages: dict[str, str]
) -> None:
    name = _page(pages, "table")
    page = phone(name)
    _no_horizontal_overflow(page, name)
    tables = page.evaluate(TABLES)
    assert tables, f"{name}: no table found"
    for t in tables:
        if t["table"] > PHONE["width"]:
            assert t["scrollable"], f"{name}: a table wider than the phone has no scroll box: {t}"
        if t["scrollable"]:
            assert t["boxRight"] <= PHONE["width"] + 1, f"{name}: a table's box sticks out: {t}"
    assert any(t["scrollable"] and "table" in t["boxClass"] for t in tables), (
        f"{name}: the exercise tables are not inside the theme's scrollable wrapper: {tables}"
    )
    for t in tables:  # and they fit: no column is pushed off-screen
        assert t["boxScroll"] <= t["boxClient"] + 1, (
            f"{name}: a table is wider than the screen, some columns need scrolling: {t}"
        )
    page.locator("article table").first.scroll_into_view_if_needed()
    _shot(page, "table")


def test_sliders_move_by_small_steps(
    phone: Callable[[str], object], pages: dict[str, str]
) -> None:
    name = _page(pages, "slider")
    page = phone(name)
    _no_horizontal_overflow(page, name)
    sliders = page.locator(".mlm-explorer input[type=range]")
    assert sliders.count() > 0, f"{name}: no slider rendered"
    slider = sliders.first
    slider.scroll_into_view_if_needed()
    low, high = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    step = float(slider.get_attribute("step"))
    box = slider.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, (
        f"{name}: the slider sticks out of the screen: {box}"
    )

    # one arrow-key press: exactly one step
    before = float(slider.input_value())
    slider.focus()
    slider.press("ArrowLeft" if before >= high - step / 2 else "ArrowRight")
    after = float(slider.input_value())
    assert abs(after - before) == pytest.approx(step), (
        f"{name}: one key press moved the slider from {before} to {after}"
    )

    # a small tap beside the thumb: a small move. The thumb's centre runs from thumb/2 to
    # width - thumb/2 (Chromium's default thumb is about 16 px wide).
    thumb = 16
    value = float(slider.input_value())
    centre = thumb / 2 + (value - low) / (high - low) * (box["width"] - thumb)
    x = min(centre + TAP_OFFSET_PX, box["width"] - 1)
    page.touchscreen.tap(box["x"] + x, box["y"] + box["height"] / 2)
    tapped = float(slider.input_value())
    assert abs(tapped - value) <= SMALL_SHARE * (high - low), (
        f"{name}: a tap {TAP_OFFSET_PX} px beside the thumb moved the slider from {value} to "
        f"{tapped} (range {low} to {high}, track {box['width']:.0f} px wide)"
    )
    explorer = page.locator(".mlm-explorer").first
    explorer_box = explorer.bounding_box()
    assert explorer_box["x"] + explorer_box["width"] <= PHONE["width"] + 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    explorer.screenshot(path=str(SHOTS / "phone__slider.png"))
    _no_horizontal_overflow(page, name)


def _content_pages() -> list[str]:
    skip = ("_static", "_sources", "_images", "vendor", "_sphinx_design_static", "genindex")
    return sorted(
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if not p.relative_to(HTML).as_posix().startswith(skip)
        and 'http-equiv="refresh"' not in p.read_text(encoding="utf-8").lower()
    )


def test_no_page_is_wider_than_the_phone(phone: Callable[[str], object]) -> None:
    """Every page: a long path in inline code, a wide output or a wide table must wrap or scroll
    in its own box, never widen the page. (Quick: one tab, the static layout only; the equations'
    boxes are checked above, and the theme keeps them within the column.)"""
    names = _content_pages()
    page = phone(names[0])
    base = page.url[: -len(names[0])]
    wide = {}
    for name in names:
        page.goto(base + name, wait_until="domcontentloaded")
        width = page.evaluate(PAGE_WIDTH)
        if width > PHONE["width"] + 1:
            wide[name] = width
    assert not wide, f"pages wider than the {PHONE['width']} px phone (px): {wide}"


# Every piece of maths MathJax typeset in the page's text (`article mjx-container`: not the
# sidebars, drawers off the screen on a phone), display or inline, wherever it sits (a `div.math`
# block, a paragraph, a table, a cell's output): where its typeset maths lies on the
# screen, and the nearest box that scrolls sideways over it (its own, a table's wrapper, an
# output area's), if any, with where that box lies.
TYPESET_MATHS = """() => [...document.querySelectorAll('article mjx-container')].map((box) => {
  const math = box.querySelector('mjx-math').getBoundingClientRect();
  let scroller = box;
  while (scroller && !['auto', 'scroll'].includes(getComputedStyle(scroller).overflowX))
    scroller = scroller.parentElement;
  const rect = scroller ? scroller.getBoundingClientRect() : null;
  return { tex: (box.querySelector('mjx-assistive-mml') || box).textContent.slice(0, 60),
           display: box.getAttribute('display') === 'true', ownScroller: scroller === box,
           mathLeft: math.left, mathRight: math.right,
           scrollerLeft: rect ? rect.left : null, scrollerRight: rect ? rect.right : null };
})"""


def _math_pages() -> list[str]:
    return [name for name in _content_pages()
            if 'class="math' in (HTML / name).read_text(encoding="utf-8")]


def _cut_off(maths: dict) -> bool:
    """Whether part of a typeset formula is off the screen where nothing scrolls to it: it does
    not lie within the screen, and no box within the screen scrolls over it from its left end."""
    width = PHONE["width"] + 1
    if maths["mathLeft"] >= -1 and maths["mathRight"] <= width:
        return False
    return not (maths["scrollerLeft"] is not None and maths["scrollerLeft"] >= -1
                and maths["scrollerRight"] <= width
                and maths["mathLeft"] >= maths["scrollerLeft"] - 1)


def test_no_formula_is_cut_off(phone: Callable[[str], object]) -> None:
    """On every page with maths, each typeset formula, display or inline, lies within the screen
    or scrolls inside a box of its own that does: a formula too wide for the column (an inline
    one too: it cannot break across lines) is never cut off at the screen's edge."""
    names = _math_pages()
    assert names, "no page of the built book has maths"
    cut, counted = {}, {"display": 0, "inline": 0}
    page = phone(names[0])
    base = page.url[: -len(names[0])]
    for name in names:
        page.goto(base + name, wait_until="domcontentloaded")
        page.evaluate(WAIT_FOR_MATH)
        page.wait_for_timeout(200)  # layout after MathJax's last pass and the page's scripts
        for maths in page.evaluate(TYPESET_MATHS):
            counted["display" if maths["display"] else "inline"] += 1
            if _cut_off(maths):
                cut.setdefault(name, []).append(maths)
    print(f"typeset formulas on {len(names)} pages: {counted}")
    assert counted["display"] and counted["inline"], counted
    assert not cut, f"formulas cut off at {PHONE['width']} px: {cut}"
