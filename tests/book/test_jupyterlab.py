"""Every lesson in JupyterLab 4 itself, in headless Chromium, with every request off this machine
blocked: the lessons read as in the book and their explorers answer the keyboard and the mouse.

One JupyterLab server (127.0.0.1, no token, a temporary root, configuration and settings) serves
copies of the lessons. For each lesson the test opens it, runs the Run All command, and checks:
no error output and nothing on stderr; no raw MyST syntax left in the rendered Markdown; math
typeset; the answers of "Check yourself" folded in ``<details>``; and every explorer driven with
the arrow keys, Enter and the mouse (the keys JupyterLab's notebook shortcuts would otherwise take)
shows the mathematically right values. And nbgrader's Validate button, clicked once on a correct
and once on a wrong ex4 of a freshly released course, says so. Screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port
from test_browser import _expected_fates, _shown_fates, _softmax

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SHOTS = ROOT / "artifacts" / "screenshots"
SLOWEST = ("06_training_tiny_mlm.ipynb", "05_many_masks_one_objective.ipynb")
RAW_MYST = ("{glue", ":::{", "{dropdown}", "{doc}`", "{ref}`", "{cite", "```{", "{admonition}")
SETTINGS = {  # JupyterLab user settings: every cell in the DOM, no news or update checks
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}



@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the JupyterLab server serves, holding copies of the lessons."""
    work = tmp_path_factory.mktemp("jupyterlab") / "notebooks"
    work.mkdir()
    for name in LESSONS:
        shutil.copy(ROOT / "notebooks" / name, work / name)
    return work


@pytest.fixture(scope="module")
def lab(lab_root: Path, unavailable: Callable[[str], None]) -> Iterator[str]:
    """One JupyterLab server for all lessons (and the notebooks a test adds to ``lab_root``);
    returns its base URL."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        unavailable("jupyterlab is not installed: `make env` installs the dev dependencies")
    base, work = lab_root.parent, lab_root
    for path, values in SETTINGS.items():
        file = base / "settings" / f"{path}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    # the Validate button's server side reads nbgrader_config from here: nbgrader's defaults
    # (4 s for a kernel's last output, 30 s a cell) fit a student's machine, not a loaded CI one
    (base / "config").mkdir()
    (base / "config" / "nbgrader_config.json").write_text(
        json.dumps({"Execute": {"timeout": 900, "iopub_timeout": 120}}))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = (base / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",  # CI containers often run as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(base / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Lesson:
    """One lesson opened in JupyterLab, with every request that leaves 127.0.0.1 aborted."""

    def __init__(self, browser: object, lab: str, name: str) -> None:
        self.name = name
        self.left_machine: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.route("**/*", self._route)
        workspace = Path(name).stem  # one workspace per page: the pages do not share a layout
        self.page.goto(f"{lab}lab/workspaces/{workspace}/tree/{name}?reset", wait_until="load")
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext",
            timeout=60_000,
        )

    def _route(self, route: object) -> None:
        url = route.request.url
        scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
        if scheme in ("data", "blob", "ws") or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.left_machine.append(url)
            route.abort()

    def start_run_all(self) -> None:
        """Start the Run All command once the kernel is ready; :meth:`ran` waits for it."""
        self.page.evaluate(
            """() => {
              const panel = window.jupyterapp.shell.currentWidget;
              window.mlmRunAll = (async () => {
                await panel.context.ready;
                await panel.sessionContext.ready;
                return await window.jupyterapp.commands.execute('notebook:run-all-cells');
              })();
            }"""
        )

    def ran(self) -> bool:
        return self.page.evaluate("() => window.mlmRunAll")

    def close(self) -> None:
        self.page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
        self.context.close()


@pytest.fixture(scope="module")
def lessons(
    browser: object, lab: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, Lesson]]:
    """Every lesson a selected test checks open in its own page and running all its cells, all
    at once: the kernels share the machine's cores, and each test waits only for its own lesson.
    A lesson no selected test checks is not run (``-k 03_`` runs one lesson, not eight)."""
    selected = {
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    opened = {}
    try:
        for name in sorted(selected, key=lambda n: n not in SLOWEST):  # the slowest start first
            opened[name] = Lesson(browser, lab, name)
            opened[name].start_run_all()
        yield opened
    finally:
        for lesson in opened.values():
            lesson.close()


# --- what every lesson must satisfy ----------------------------------------------------------

MARKDOWN_TEXT = """() => [...document.querySelectorAll('.jp-Notebook .jp-RenderedMarkdown')]
  .map((m) => { const c = m.cloneNode(true);
                c.querySelectorAll('mjx-container, mjx-assistive-mml').forEach((n) => n.remove());
                return c.textContent; }).join('\\n')"""
WAIT_FOR_MATH = """async () => {
  for (let i = 0; i < 100; i++) {
    const raw = [...document.querySelectorAll('.jp-RenderedMarkdown')].some((m) => {
      const c = m.cloneNode(true);
      c.querySelectorAll('pre, code, mjx-container').forEach((n) => n.remove());
      return /\\$[^$\\s]/.test(c.textContent);
    });
    if (!raw && document.querySelector('mjx-container')) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}"""


def check_lesson(lesson: Lesson) -> None:
    page, name = lesson.page, lesson.name
    assert lesson.ran(), f"{name}: Run All did not succeed"
    counts = page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
             .filter((c) => c.model.type === 'code').map((c) => c.model.executionCount)"""
    )
    assert counts and all(isinstance(c, int) for c in counts), f"{name}: not every cell ran"
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert errors.count() == 0, f"{name}: error or stderr output: {errors.first.inner_text()[:500]}"
    assert page.locator(".jp-Notebook .jp-MarkdownCell:not(.jp-mod-rendered)").count() == 0
    assert page.evaluate(WAIT_FOR_MATH), f"{name}: math left as raw TeX"
    text = page.evaluate(MARKDOWN_TEXT)
    raw = [syntax for syntax in RAW_MYST if syntax in text]
    assert not raw, f"{name}: raw MyST syntax visible in JupyterLab: {raw}"
    assert "No renderer could be found" not in page.locator(".jp-Notebook").inner_text()
    if "## Check yourself" in (ROOT / "notebooks" / name).read_text():
        answers = page.locator(".jp-Notebook details")
        assert answers.count() >= 3, f"{name}: the answers are not behind <details>"
        for i in range(answers.count()):
            details = answers.nth(i)
            assert details.evaluate("(d) => !d.open"), f"{name}: an answer is open"
            assert details.locator("summary").inner_text().strip() == "Answer"
            assert details.locator("p").first.is_hidden(), f"{name}: an answer is in plain view"
        answers.first.locator("summary").click()
        assert answers.first.evaluate("(d) => d.open")
        assert answers.first.locator("p").first.is_visible()


def _shot(lesson: Lesson, suffix: str = "") -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    stem = f"jupyterlab__{Path(lesson.name).stem}{suffix}"
    lesson.page.screenshot(path=str(SHOTS / f"{stem}.png"))


# --- the explorers, driven with the keys JupyterLab's shortcuts use, and the mouse -------------


def drive_softmax_explorer(root: object) -> None:
    first = root.locator("input.mlm-logit").first
    before = float(first.input_value())  # the slider shows its value snapped to its 0.1 step
    for _ in range(5):
        first.press("ArrowUp")  # in command mode, JupyterLab would select the cell above
    first.press("ArrowDown")
    assert float(first.input_value()) == pytest.approx(before + 0.4)
    assert float(first.get_attribute("data-value")) == pytest.approx(before + 0.4)
    temp = root.locator("input.mlm-temperature")
    box = temp.bounding_box()
    temp.click(position={"x": box["width"] * 0.25, "y": box["height"] / 2})
    t = float(temp.get_attribute("data-value"))
    assert t != pytest.approx(1.0)
    logits = [float(x.get_attribute("data-value")) for x in root.locator("input.mlm-logit").all()]
    probs = _softmax(logits, t)
    true_index = int(root.get_attribute("data-true-index"))
    shown = [o.text_content() for o in root.locator("output.mlm-prob").all()]
    assert shown == [f"{p:.3f}" for p in probs]
    assert root.locator(".mlm-loss").text_content() == f"{-math.log(probs[true_index]):.3f}"


def _probs(card: object) -> list[float]:
    return json.loads(card.get_attribute("data-probs"))


def drive_lowest_loss_explorer(root: object) -> None:
    true_index = int(root.get_attribute("data-true-index"))
    cards = root.locator(".mlm-candidate")
    assert root.locator(".mlm-candidate-loss:visible").count() == 0  # nothing before a pick
    cards.nth(0).locator("label").first.click()  # mouse
    root.locator("input[type=radio]").nth(0).press("ArrowDown")  # keyboard: the next output
    second = cards.nth(1)
    assert second.locator("input[type=radio]").is_checked()
    loss = -math.log(_probs(second)[true_index])
    assert root.locator(".mlm-summary .mlm-loss").text_content() == f"{loss:.3f}"
    edit = second.locator("input.mlm-edit")
    before = _probs(second)
    for _ in range(3):
        edit.press("ArrowUp")
    after = _probs(second)
    assert after[true_index] == pytest.approx(round(before[true_index], 2) + 0.03)
    assert sum(after) == pytest.approx(1.0)
    scale = (1 - after[true_index]) / (1 - before[true_index])  # the rest keep their proportions
    for j, (b, a) in enumerate(zip(before, after, strict=True)):
        if j != true_index:
            assert a == pytest.approx(b * scale)
    assert root.locator(".mlm-summary .mlm-loss").text_content() == (
        f"{-math.log(after[true_index]):.3f}"
    )
    losses = {c.get_attribute("data-name"): -math.log(_probs(c)[true_index]) for c in cards.all()}
    lowest = min(losses, key=losses.__getitem__)
    marked = root.locator(".mlm-candidate:has(.mlm-lowest)")
    assert marked.count() == 1 and marked.get_attribute("data-name") == lowest


def _fates(root: object) -> tuple[list[int], list[int]]:
    return _shown_fates(root), _expected_fates(root)


def drive_masking_sampler(root: object) -> None:
    seed_box = root.locator("input.mlm-seed")
    seed = int(seed_box.input_value())
    seed_box.press("ArrowUp")
    assert int(root.get_attribute("data-seed")) == seed + 1
    shown, expected = _fates(root)
    assert shown == expected
    draws = int(root.get_attribute("data-draws"))
    root.locator("button.mlm-resample").press("Enter")  # JupyterLab binds Enter in command mode
    assert int(root.get_attribute("data-draws")) == draws + 1
    root.locator("button.mlm-resample-100").click()
    assert int(root.get_attribute("data-draws")) == draws + 101
    selection = root.locator('input[data-key="mlm_probability"]')
    for _ in range(10):
        selection.press("ArrowUp")
    assert float(root.get_attribute("data-mlm_probability")) == pytest.approx(0.25)
    shown, expected = _fates(root)
    assert shown == expected


def drive_mask_predict_explorer(root: object) -> None:
    root.locator(".mlm-static-note").wait_for(state="hidden", timeout=15_000)  # a kernel answered
    toggles = root.locator("button")
    words = [t.inner_text().strip() for t in toggles.all()]
    toggles.nth(1).press("Enter")
    rows = root.locator("table.mlm-predictions tr")
    rows.nth(1).wait_for()
    toggles.nth(5).click()
    rows.nth(2).wait_for()
    cells = [[td.inner_text() for td in r.locator("td").all()] for r in rows.all()[1:]]
    assert [c[1] for c in cells] == [words[1], words[5]]
    # the same numbers as the pretrained model gives here, in this process
    from mlmcourse.model import load_pretrained, predicted_distribution

    model, vocab = load_pretrained()
    corrupted = " ".join("[MASK]" if j in (1, 5) else w for j, w in enumerate(words))
    losses = []
    for position, word, p, loss, _ in cells:
        probs = predicted_distribution(model, corrupted, int(position), vocab)
        true_p = float(probs[vocab.token_to_id(word)])
        assert p == f"{true_p:.3f}" and loss == f"{-math.log(true_p):.3f}"
        losses.append(-math.log(true_p))
    assert root.locator("p b").last.inner_text() == f"{sum(losses):.3f}"


EXPLORERS = {
    ".mlm-softmax-explorer": drive_softmax_explorer,
    ".mlm-lowest-loss-explorer": drive_lowest_loss_explorer,
    ".mlm-masking-sampler": drive_masking_sampler,
    ".mlm-mask-predict": drive_mask_predict_explorer,
}
EXPECTED = {  # the explorers each lesson shows
    "02_corrupting_the_input.ipynb": [".mlm-masking-sampler"],
    "03_predicted_distribution.ipynb": [".mlm-softmax-explorer"],
    "04_true_token_and_cross_entropy.ipynb": [".mlm-lowest-loss-explorer"],
    "07_reading_predictions.ipynb": [".mlm-mask-predict"],
}


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs_and_reads_right_in_jupyterlab(name: str, lessons: dict[str, Lesson]) -> None:
    lesson = lessons[name]
    check_lesson(lesson)
    found = [cls for cls in EXPLORERS if lesson.page.locator(cls).count()]
    assert found == EXPECTED.get(name, []), f"{name}: explorers shown {found}"
    for cls in found:
        root = lesson.page.locator(cls).first
        root.scroll_into_view_if_needed()
        EXPLORERS[cls](root)
        root.screenshot(path=str(SHOTS / f"jupyterlab__{Path(name).stem}{cls}.png"))
    _shot(lesson)
    assert not lesson.left_machine, f"{name}: requests left the machine: {lesson.left_machine}"


# --- the Validate button of nbgrader's JupyterLab extension -------------------------------------

VALIDATE_DIALOG = ".jp-Dialog #validation-message"


def _validate_in_jupyterlab(browser: object, lab: str, name: str) -> object:
    """Open ``name`` in JupyterLab, click the notebook toolbar's Validate button and wait for
    its dialog; the dialog's message element."""
    opened = Lesson(browser, lab, name)
    try:
        page = opened.page
        button = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button")
        button.click()
        message = page.locator(VALIDATE_DIALOG)
        message.wait_for(timeout=600_000)  # nbgrader runs the whole notebook first
        result = {"classes": message.get_attribute("class"), "text": message.inner_text(),
                  "error_dialog": page.locator(".jp-Dialog.nbgrader-ErrorDialog").count() > 0}
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"jupyterlab__validate_{Path(name).stem}.png"))
        assert not opened.left_machine, f"{name}: requests left the machine: {opened.left_machine}"
        return result
    finally:
        opened.close()


def test_validate_button_passes_a_correct_solution_and_fails_a_wrong_one(
    browser: object, lab: str, lab_root: Path, tmp_path: Path
) -> None:
    """The student's Validate button (nbgrader's labextension and server extension): a correct
    ex4 in the released notebook is told it passes every test; an answer with a misconception
    is told which test cell failed."""
    from cases import variants as v

    from mlmcourse.cli import main
    from mlmcourse.grading.authoring.release import release

    assignment = "ex4_cross_entropy"
    course = tmp_path / "course"
    assert main(["init", str(course)]) == 0
    assert release(assignment, course)["success"]
    folder = lab_root / assignment
    folder.mkdir()
    released = v.read(v.release_path(assignment, course))
    visible = {v.nbgrader_meta(c).get("grade_id") for c in released.cells
               if v.nbgrader_meta(c).get("grade") and not v.nbgrader_meta(c).get("solution")}
    wrong = next(case for case in v.variants(assignment) if visible & set(case.fails))
    nbformat.write(v.solution_submission(assignment, course), folder / "solution.ipynb")
    nbformat.write(v.misconception_submission(assignment, wrong, course), folder / "wrong.ipynb")

    passed = _validate_in_jupyterlab(browser, lab, f"{assignment}/solution.ipynb")
    assert "validation-success" in passed["classes"].split(), passed
    assert passed["text"].strip() == "Success! Your notebook passes all the tests.", passed
    assert not passed["error_dialog"], passed

    failed = _validate_in_jupyterlab(browser, lab, f"{assignment}/wrong.ipynb")
    assert "validation-failed" in failed["classes"].split(), (wrong.name, failed)
    assert "The following cell failed:" in failed["text"], (wrong.name, failed)
    assert failed["error_dialog"], failed
