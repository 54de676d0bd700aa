"""The built book in headless Chromium, with every request off this machine blocked.

Every page: math typeset by the vendored MathJax (no raw ``$$`` left), every image loaded and
described by alt text, every widget rendered, and no request left 127.0.0.1. Every live
explorer: moving a slider (keyboard and mouse) or picking an option shows the mathematically
right probabilities and loss. A scratch book that shows all four explorers is built with the
repo's vendoring keys of ``_config.yml`` and checked the same way. Screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
import yaml

from mlmcourse.widgets.prng import sample_fates

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "artifacts" / "screenshots"
VENDORING_KEYS = ("html_extra_path", "mathjax_path", "nb_ipywidgets_js", "html_js_files")
NOT_PAGES = ("_static", "_sources", "_images", "vendor", "_sphinx_design_static")


def _pages(html: Path) -> list[str]:
    """The content pages (not assets, not meta-refresh redirects such as index.html)."""
    return sorted(
        p.relative_to(html).as_posix()
        for p in html.rglob("*.html")
        if p.relative_to(html).parts[0] not in NOT_PAGES
        and 'http-equiv="refresh"' not in p.read_text(encoding="utf-8").lower()
    )


BOOK_PAGES = _pages(HTML) if HTML.is_dir() else []


# --- browser plumbing ------------------------------------------------------------------------


class Visit:
    """One page opened with every request that leaves 127.0.0.1 aborted and recorded."""

    def __init__(self, browser: object, url: str) -> None:
        self.left_machine: list[str] = []
        self.errors: list[str] = []  # uncaught JavaScript exceptions of the page
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.route("**/*", self._route)
        self.page.goto(url, wait_until="load")

    def _route(self, route: object) -> None:
        url = route.request.url
        scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
        if scheme in ("data", "blob") or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.left_machine.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: object) -> Iterator[Callable[[str], Visit]]:
    opened: list[Visit] = []

    def open_page(url: str) -> Visit:
        opened.append(Visit(browser, url))
        return opened[-1]

    yield open_page
    for v in opened:
        v.close()


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name.replace('/', '__')}.png"), full_page=True)


# --- what every page must satisfy ------------------------------------------------------------

WAIT_FOR_MATH = """async () => {
  if (!document.querySelector('.math')) return true;
  for (let i = 0; i < 100 && !(window.MathJax && window.MathJax.startup
      && window.MathJax.startup.promise); i++) await new Promise((r) => setTimeout(r, 100));
  await window.MathJax.startup.promise;
  return true;
}"""
UNTYPESET_MATH = "() => [...document.querySelectorAll('.math')]"
UNTYPESET_MATH += ".filter((m) => !m.querySelector('mjx-container')).map((m) => m.textContent)"
PROSE_TEXT = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, textarea').forEach((n) => n.remove());
  return body.textContent;
}"""
IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach((img) => { img.loading = 'eager'; });
  await Promise.all(imgs.map((img) => img.complete ? null
    : new Promise((r) => { img.onload = r; img.onerror = r; })));
  return imgs.map((img) => ({ src: img.currentSrc || img.src, width: img.naturalWidth,
                             alt: (img.getAttribute('alt') || '').trim() }));
}"""
WIDGETS_RENDERED = """() => {
  const views = document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]').length;
  const shown = [...document.querySelectorAll('.widget-subarea')]
    .filter((a) => a.childElementCount > 0).length;
  return shown >= views;
}"""


def check_page(v: Visit, name: str) -> None:
    page = v.page
    page.evaluate(WAIT_FOR_MATH)
    page.wait_for_function(WIDGETS_RENDERED, timeout=20_000)
    untypeset = page.evaluate(UNTYPESET_MATH)
    assert not untypeset, f"{name}: math left as raw TeX (MathJax did not typeset): {untypeset[:3]}"
    if page.locator(".math").count():
        assert page.locator("mjx-container").count() > 0, f"{name}: no MathJax output"
    assert "$$" not in page.evaluate(PROSE_TEXT), f"{name}: raw $$ left in the text"
    for img in page.evaluate(IMAGES):
        assert img["width"] > 0, f"{name}: image {img['src']} did not load"
        assert img["alt"], f"{name}: image {img['src']} has no alt text"
    _shot(page, name)
    assert not v.left_machine, f"{name}: requests left the machine: {v.left_machine}"
    # e.g. Thebe's configuration declared twice (book/_ext/no_thebe.py removes it)
    assert not v.errors, f"{name}: JavaScript errors: {v.errors}"


# --- what every explorer must do -------------------------------------------------------------


def _softmax(logits: list[float], temperature: float) -> list[float]:
    z = [x / temperature for x in logits]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    return [x / sum(e) for x in e]


def check_softmax_explorer(root: object) -> None:
    first = root.locator("input.mlm-logit").first
    before = float(first.input_value())
    first.focus()
    for _ in range(5):
        first.press("ArrowRight")
    assert float(first.input_value()) == pytest.approx(
        min(before + 0.5, float(first.get_attribute("max")))
    )
    temp = root.locator("input.mlm-temperature")
    box = temp.bounding_box()
    temp.click(position={"x": box["width"] * 0.25, "y": box["height"] / 2})
    # the state the explorer computes from: a slider snaps its shown value to its step
    logits = [float(x.get_attribute("data-value")) for x in root.locator("input.mlm-logit").all()]
    t = float(temp.get_attribute("data-value"))
    assert t == pytest.approx(float(temp.input_value()))
    true_index = int(root.get_attribute("data-true-index"))
    probs = _softmax(logits, t)
    shown = [o.text_content() for o in root.locator("output.mlm-prob").all()]
    assert shown == [f"{p:.3f}" for p in probs]
    assert root.locator(".mlm-true-prob").text_content() == f"{probs[true_index]:.3f}"
    assert root.locator(".mlm-loss").text_content() == f"{-math.log(probs[true_index]):.3f}"


def check_lowest_loss_explorer(root: object) -> None:
    true_index = int(root.get_attribute("data-true-index"))
    cards = root.locator(".mlm-candidate").all()
    losses = {
        c.get_attribute("data-name"): -math.log(
            [float(x) for x in c.get_attribute("data-probs").strip("[]").split(",")][true_index]
        )
        for c in cards
    }
    lowest = min(losses, key=losses.__getitem__)
    assert root.locator(".mlm-candidate-loss:visible").count() == 0  # nothing shown before a pick
    pick = cards[-1]
    pick.locator("label").first.click()
    name = pick.get_attribute("data-name")
    assert root.locator(".mlm-summary .mlm-loss").text_content() == f"{losses[name]:.3f}"
    for c in cards:
        line = c.locator(".mlm-candidate-loss")
        assert f"{losses[c.get_attribute('data-name')]:.3f}" in line.text_content()
        assert line.is_visible()
    marked = root.locator(".mlm-candidate:has(.mlm-lowest)")
    assert marked.count() == 1 and marked.get_attribute("data-name") == lowest
    # the edit slider: the true token's share moves, the other entries keep their proportions
    before = [float(x) for x in pick.get_attribute("data-probs").strip("[]").split(",")]
    pick.locator("input.mlm-edit").press("ArrowDown")
    after = [float(x) for x in pick.get_attribute("data-probs").strip("[]").split(",")]
    assert after[true_index] == pytest.approx(round(before[true_index], 2) - 0.01)
    assert sum(after) == pytest.approx(1.0)
    assert root.locator(".mlm-summary .mlm-loss").text_content() == (
        f"{-math.log(after[true_index]):.3f}"
    )
    widths = {round(t.bounding_box()["width"], 1) for t in root.locator(".mlm-bar-track").all()}
    assert len(widths) == 1, f"the bars are drawn to different scales: track widths {widths}"


def _shown_fates(root: object) -> list[int]:
    cells = root.locator(".mlm-corrupted [data-fate]").all()
    return [int(c.get_attribute("data-fate")) for c in cells]


def _expected_fates(root: object) -> list[int]:
    first_row = root.locator(".mlm-tokens").first.locator("[data-fate]").all()
    tokens = [c.text_content() for c in first_row]
    d = root.evaluate("(el) => ({ ...el.dataset })")
    resamples = sample_fates(
        tokens,
        float(d["mlm_probability"]),
        float(d["mask_prob"]),
        float(d["random_prob"]),
        int(d["seed"]),
        int(d["draws"]),
    )
    return [int(f) for f in resamples[-1].fates]


def check_masking_sampler(root: object) -> None:
    assert _shown_fates(root) == _expected_fates(root)
    seed = int(root.get_attribute("data-seed"))
    root.locator("input.mlm-seed").press("ArrowUp")
    assert int(root.get_attribute("data-seed")) == seed + 1
    assert _shown_fates(root) == _expected_fates(root)
    draws = int(root.get_attribute("data-draws"))
    root.locator("button.mlm-resample").focus()
    root.locator("button.mlm-resample").press("Enter")
    assert int(root.get_attribute("data-draws")) == draws + 1
    assert _shown_fates(root) == _expected_fates(root)
    root.locator("button.mlm-resample-100").click()
    assert int(root.get_attribute("data-draws")) == draws + 101
    selection = root.locator('input[data-key="mlm_probability"]')
    selection.focus()
    selection.press("End")
    fates = _shown_fates(root)
    assert fates == _expected_fates(root)
    assert fates.count(0) == sum(
        t.text_content().startswith("[")
        for t in root.locator(".mlm-tokens").first.locator("[data-fate]").all()
    )


EXPLORERS = {
    "mlm-softmax-explorer": check_softmax_explorer,
    "mlm-lowest-loss-explorer": check_lowest_loss_explorer,
    "mlm-masking-sampler": check_masking_sampler,
}


def check_explorers(v: Visit, name: str, source: str) -> list[str]:
    """Drive every explorer of the page; return the classes of those found."""
    found = []
    for cls, check in EXPLORERS.items():
        if cls not in source:
            continue
        roots = v.page.locator(f".{cls}")
        assert roots.count() > 0, f"{name}: the page embeds a {cls} but none was rendered"
        for i in range(roots.count()):
            check(roots.nth(i))
            roots.nth(i).screenshot(path=str(SHOTS / f"{name.replace('/', '__')}.{cls}.{i}.png"))
        found.append(cls)
    if "mlm-mask-predict" in source:
        assert "needs a live kernel" in v.page.locator(".mlm-mask-predict").first.text_content()
        found.append("mlm-mask-predict")
    assert not v.left_machine, f"{name}: requests left the machine: {v.left_machine}"
    return found


# --- the built book --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book_url(serve: Callable[[Path], str], unavailable: Callable[[str], None]) -> str:
    if not (HTML / "index.html").is_file():
        unavailable(f"the book is not built ({HTML} is missing): run `make book` first")
    return serve(HTML)


@pytest.mark.parametrize("name", BOOK_PAGES or ["(no built book)"])
def test_book_page(name: str, book_url: str, visit: Callable[[str], Visit]) -> None:
    v = visit(book_url + name)
    check_page(v, name)
    check_explorers(v, name, (HTML / name).read_text(encoding="utf-8"))


# --- a scratch book with all four explorers, built with the repo's vendoring keys -----------

SCRATCH_CELLS = [
    "The loss $-\\log p$ of one masked word:\n\n"
    "$$\\mathrm{Loss} = -\\log \\Pr_i(x_i \\mid \\bar x)$$",
    "import torch\n"
    "from mlmcourse.model import TinyMLM\n"
    "from mlmcourse.vocab import Vocabulary\n"
    "from mlmcourse.widgets import (LowestLossExplorer, MaskingSampler, MaskPredictExplorer,\n"
    "                               SoftmaxExplorer)",
    "SoftmaxExplorer(['cat', 'dog', 'mat', 'sat'], [2.0, 1.0, 0.5, -1.0], true_index=0)",
    "LowestLossExplorer(['cat', 'dog', 'mat'], {'A': [0.6, 0.3, 0.1], 'B': [0.5, 0.1, 0.4],\n"
    "                   'C': [0.2, 0.7, 0.1]}, true_index=0)",
    "MaskingSampler('[CLS] the cat sat on the mat because it was tired [SEP]'.split(), seed=3)",
    "vocab = Vocabulary('the cat sat on mat'.split())\n"
    "torch.manual_seed(0)\n"
    "model = TinyMLM(len(vocab), d_model=16, n_heads=2, n_layers=1)\n"
    "MaskPredictExplorer('the cat sat on the mat', model=model, vocab=vocab, masked=[1])",
]


def _vendoring_config(unavailable: Callable[[str], None]) -> dict:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    keys = {k: config[k] for k in VENDORING_KEYS if k in config}
    if "html_extra_path" not in keys:
        pytest.fail("_config.yml sets no html_extra_path: the vendored assets would not be copied")
    keys["html_extra_path"] = [str(ROOT / p) for p in keys["html_extra_path"]]
    if shutil.which("npm") is None:
        unavailable("npm is not installed: it fetches the vendored MathJax and widget renderer")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor_assets.py"), "--build-dir", "/nonexistent"],
        check=True,
        timeout=600,
    )
    return keys


@pytest.fixture(scope="module")
def scratch_book(
    tmp_path_factory: pytest.TempPathFactory, unavailable: Callable[[str], None]
) -> Path:
    book = tmp_path_factory.mktemp("scratch_book")
    config = {
        "title": "Scratch",
        "author": "tests",
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "force", "timeout": 120},
        "parse": {"myst_enable_extensions": ["dollarmath", "amsmath"]},
        "sphinx": {"recursive_update": True, "config": _vendoring_config(unavailable),
                   # the book's own Sphinx extensions (no Thebe script), from the repository
                   "local_extensions": {
                       name: str(ROOT / path) for name, path in
                       yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
                       .get("local_extensions", {}).items()}},
    }
    (book / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: sub/explorers\n"
    )
    (book / "intro.md").write_text("# Scratch\n\nInline $x_i$ and\n\n$$\\bar x \\ne x$$\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_markdown_cell("# Explorers\n\n" + SCRATCH_CELLS[0])]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in SCRATCH_CELLS[1:]]
    (book / "sub").mkdir()
    nbformat.write(nb, book / "sub" / "explorers.ipynb")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run(
        [str(jupyter_book), "build", "-W", "--quiet", str(book)], check=True, timeout=600
    )
    return book / "_build" / "html"


def test_scratch_book_explorers_work_offline(
    scratch_book: Path, serve: Callable[[Path], str], visit: Callable[[str], Visit]
) -> None:
    base = serve(scratch_book)
    for name in _pages(scratch_book):
        v = visit(base + name)
        check_page(v, f"scratch/{name}")
        found = check_explorers(v, f"scratch/{name}", (scratch_book / name).read_text())
        if name == "sub/explorers.html":
            assert found == [*EXPLORERS, "mlm-mask-predict"]
