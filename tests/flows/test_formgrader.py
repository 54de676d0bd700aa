"""nbgrader's formgrader, opened in headless Chromium on what ``mlmcourse grade`` wrote, runs
nothing a student wrote.

A tiny course (``tests/hostile/corpus.py``) is graded by the real ``mlmcourse grade`` with one
honest student and one hostile student whose written answer, an extra markdown cell and an
extra raw cell carry scripts that would set ``window.__pwned``, read the source notebook
through the Jupyter contents API and PUT a manual score through formgrader's API. A
``jupyter server`` with nbgrader's formgrader extension (127.0.0.1, a known token, the course
as root, ``CourseDirectory.root`` and ``Exchange.root`` inside the temporary folder) serves the
manual-grading page ``/formgrader/submissions/<submission id>/?index=0``; Chromium opens it
with every request off 127.0.0.1 aborted and every request recorded. Nothing may have run,
no request may reach the contents API or a grade's PUT, the manual scores stay as they were,
and the student's text is on the page as inert text.

The same page built from the raw (unsanitised) submission is opened last, as a control: there
the attack must succeed, which shows the checks above can see it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import free_port, stop_group

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOSTILE = "mallory"
HONEST = "alice"

# What the hostile student's scripts do: mark the page, read the instructor's source notebook
# through the contents API, and give themselves full marks through formgrader's API.
ATTACK = """(async () => {
  window.__pwned = 1;
  const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || "";
  const headers = {"X-XSRFToken": decodeURIComponent(xsrf), "Content-Type": "application/json"};
  const source = await fetch("/api/contents/source/softmax/softmax.ipynb", {headers});
  window.__stolen = (await source.text()).length;
  const grades = await (await fetch("/formgrader/api/grades?submission_id="
                                    + window.submission_id, {headers})).json();
  for (const g of grades) {
    await fetch("/formgrader/api/grade/" + g.id, {method: "PUT", headers,
                body: JSON.stringify({manual_score: 99, extra_credit: 99})});
  }
  window.__pwned = 2;
  window.__attack_done = true;
})();"""
ONERROR = "window.__pwned=1;fetch('/api/contents/source/softmax/softmax.ipynb')"
WRITTEN_ANSWER = f"""Subtracting the maximum keeps every exponent at most zero, so no overflow.

I typed &lt;b&gt;not bold&lt;/b&gt; on purpose.

<script>{ATTACK}</script>
<img src=x onerror="{ONERROR}">
<svg onload="{ONERROR}"></svg>
[see my notes](javascript:{ONERROR})
<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>
<img src="http://tracker.invalid/html.png"> ![pixel](http://tracker.invalid/markdown.png)
"""
EXTRA_MARKDOWN = f"""## My extra notes

<details open ontoggle="{ONERROR}"><summary>click</summary>MALLORY-EXTRA-NOTE</details>
<script>{ATTACK}</script>
"""
EXTRA_RAW = f"<script>{ATTACK}</script><b>MALLORY-RAW</b>"


def _hostile_submission() -> dict:
    nb = corpus.solved(corpus.source_notebook())
    for index, cell in enumerate(nb["cells"]):
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "why":
            cell["source"] = WRITTEN_ANSWER
            why = index
    # a heading whose anchor id is the written answer's score box, placed before it
    nb["cells"].insert(why, {"cell_type": "markdown", "id": "mallory-clobber", "metadata": {},
                             "source": "### why\n\nMALLORY-HEADING"})
    nb["cells"].append({"cell_type": "markdown", "id": "mallory-notes", "metadata": {},
                        "source": EXTRA_MARKDOWN})
    nb["cells"].append({"cell_type": "raw", "id": "mallory-raw", "metadata": {},
                        "source": EXTRA_RAW})
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0, "state": {}}}
    return nb



# --- the graded course ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course graded by the real ``mlmcourse grade``: one honest, one hostile student."""
    tmp = tmp_path_factory.mktemp("formgrader")
    course = corpus.write_course(tmp / "course")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.Exchange.root = {str(tmp / 'exchange')!r}\n")
    (tmp / "exchange").mkdir()
    subs = tmp / "subs"
    corpus.write_submissions(subs, ["honest_2"])
    (subs / "honest_2").rename(subs / HONEST)
    (subs / HOSTILE).mkdir()
    (subs / HOSTILE / "softmax.ipynb").write_text(json.dumps(_hostile_submission(), indent=1))
    done = subprocess.run(
        [str(BIN / "mlmcourse"), "grade", "softmax", str(subs), "--out", str(tmp / "out"),
         "--course", str(course), "--jobs", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    for student in (HONEST, HOSTILE):
        assert (course / "autograded" / student / "softmax" / "softmax.ipynb").exists()
    return course


def _manual_scores(course: Path) -> dict[str, dict[str, object]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {sub.student.id: {g.name: (g.manual_score, g.extra_credit)
                                 for g in sub.notebooks[0].grades}
                for sub in gb.assignment_submissions("softmax")}


def _submission_id(course: Path, student: str) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return gb.find_submission_notebook("softmax", "softmax", student).id


# --- formgrader ----------------------------------------------------------------------------


class Formgrader:
    """``jupyter server`` with nbgrader's formgrader on 127.0.0.1, the course as its root."""

    def __init__(self, course: Path, home: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        config = home / "jupyter-config"
        config.mkdir(parents=True, exist_ok=True)
        # only formgrader: no lab, notebook or terminals (faster start, less surface)
        extensions = {name: False for name in (
            "jupyterlab", "notebook", "notebook_shim", "jupyter_lsp", "jupyter_server_terminals",
            "nbgrader.server_extensions.assignment_list",
            "nbgrader.server_extensions.course_list",
            "nbgrader.server_extensions.validate_assignment")}
        extensions["nbgrader.server_extensions.formgrader"] = True
        (config / "jupyter_server_config.json").write_text(json.dumps(
            {"ServerApp": {"jpserver_extensions": extensions}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
        env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(home / "jupyter-data"),
                   JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"), HOME=str(home),
                   PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]))
        self.log = home / "jupyter-server.log"
        self.process = subprocess.Popen(
            [str(BIN / "jupyter"), "server", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--ServerApp.root_dir={course}", "--ServerApp.open_browser=False",
             f"--IdentityProvider.token={self.token}", "--ServerApp.allow_remote_access=False",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=course, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter server exited:\n{self.log.read_text()[-3000:]}")
            try:
                request = urllib.request.Request(f"{self.base}/formgrader/api/status",
                                                 headers={"Authorization": f"token {self.token}"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"formgrader did not answer:\n{self.log.read_text()[-3000:]}")

    def close(self) -> None:
        stop_group(self.process, seconds=10)


@pytest.fixture(scope="module")
def formgrader(course: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Formgrader]:
    server = Formgrader(course, tmp_path_factory.mktemp("jupyter-home"))
    yield server
    server.close()


class GradingPage:
    """Formgrader's manual-grading page for one submission, every request recorded and every
    request that leaves 127.0.0.1 aborted."""

    def __init__(self, browser: object, formgrader: Formgrader, submission_id: str) -> None:
        self.requests: list[tuple[str, str]] = []
        self.left_machine: list[str] = []
        self.dialogs: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        # log in as the instructor (the token sets the login cookie), as a grader would
        login = self.context.new_page()
        login.goto(f"{formgrader.base}/formgrader/?token={formgrader.token}", wait_until="load")
        login.close()
        self.page = self.context.new_page()
        self.page.route("**/*", self._route)
        self.page.on("request", lambda r: self.requests.append((r.method, r.url)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = f"{formgrader.base}/formgrader/submissions/{submission_id}/?index=0"
        self.page.goto(self.url, wait_until="load")
        # formgrader's own script has loaded the grades into the score boxes
        # (its auto score as the placeholder of an automatically graded cell's score box)
        self.page.wait_for_function(
            "() => document.getElementById('test_softmax') "
            "&& document.getElementById('test_softmax').getAttribute('placeholder') === '2'",
            timeout=20_000)
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_timeout(500)  # anything asynchronous a script started

    def _route(self, route: object) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname in ("127.0.0.1",
                                                                            "localhost"):
            route.continue_()
        else:
            self.left_machine.append(url)
            route.abort()

    def pwned(self) -> list[object]:
        """``window.__pwned`` in the page and each of its frames (``None`` where unset)."""
        values = []
        for frame in self.page.frames:
            try:
                values.append(frame.evaluate("() => window.__pwned"))
            except Exception as exc:  # a frame that went away: report, never hide
                values.append(f"frame {frame.url}: {exc}")
        return values

    def close(self) -> None:
        self.context.close()


def test_formgrader_runs_no_student_script(course: Path, formgrader: Formgrader,
                                           browser: object) -> None:
    before = _manual_scores(course)
    assert before[HOSTILE]["why"] == (None, None)
    page = GradingPage(browser, formgrader, _submission_id(course, HOSTILE))
    try:
        assert page.page.title() == "softmax"
        assert page.pwned() == [None] * len(page.page.frames), page.pwned()
        contents = [r for r in page.requests if "/api/contents" in r[1]]
        assert contents == [], contents
        puts = [r for r in page.requests if r[0] in ("PUT", "POST", "PATCH", "DELETE")]
        assert puts == [], puts
        assert not [r for r in page.requests if "javascript" in r[1]]
        assert page.dialogs == []
        # nothing the student wrote was fetched (only formgrader's own MathJax tried to leave)
        assert not [u for u in page.left_machine if "tracker.invalid" in u], page.left_machine
        assert not [r for r in page.requests if "tracker.invalid" in r[1]]
        assert _manual_scores(course) == before

        # the student's words are on the page, as text; formgrader works on them
        text = page.page.inner_text("#notebook-container")
        assert "Subtracting the maximum keeps every exponent at most zero, so no overflow." in text
        assert "I typed <b>not bold</b> on purpose." in text
        assert "see my notes" in text and "MALLORY-RAW" in text and "MALLORY-HEADING" in text
        assert page.page.locator("#why").evaluate("e => e.tagName") == "INPUT"
        assert "MALLORY-EXTRA-NOTE" in page.page.text_content("#notebook-container")
        assert page.page.locator("#notebook-container script").count() == 0
        assert page.page.locator("#notebook-container iframe, #notebook-container svg, "
                                 "#notebook-container img").count() == 0
        hrefs = page.page.eval_on_selector_all("#notebook-container a[href]",
                                               "as => as.map(a => a.href)")
        assert [h for h in hrefs if urlsplit(h).scheme not in ("http", "https")] == [], hrefs
        assert page.page.input_value("#why") == ""  # no manual score set by anyone

        # formgrader still works on the neutralised notebook: the instructor grades by hand
        page.page.fill("#why", "1")
        page.page.press("#why", "Tab")
        deadline = time.monotonic() + 10
        while _manual_scores(course)[HOSTILE]["why"][0] != 1.0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _manual_scores(course)[HOSTILE]["why"][0] == 1.0
    finally:
        page.close()
    written = json.loads((course / "autograded" / HOSTILE / "softmax" / "softmax.ipynb")
                         .read_text())
    assert "widgets" not in written["metadata"]


def test_the_unsanitised_page_would_have_run_the_attack(course: Path, formgrader: Formgrader,
                                                        browser: object) -> None:
    """Control: the student's raw notebook in formgrader's place runs the attack; so the test
    above sees an attack when there is one. (Runs last: it changes the gradebook.)"""
    target = course / "autograded" / HOSTILE / "softmax" / "softmax.ipynb"
    kept = target.with_suffix(".sanitised")
    shutil.copy(target, kept)
    raw = _hostile_submission()
    del raw["metadata"]["widgets"]  # needs the widget manager from a CDN, which is blocked
    target.write_text(json.dumps(raw))
    page = None
    try:
        page = GradingPage(browser, formgrader, _submission_id(course, HOSTILE))
        page.page.wait_for_function("() => window.__attack_done === true", timeout=10_000)
        assert page.pwned()[0] in (1, 2)
        assert [r for r in page.requests if "/api/contents/source" in r[1]]
        assert [r for r in page.requests if r[0] == "PUT" and "/formgrader/api/grade/" in r[1]]
        assert _manual_scores(course)[HOSTILE]["why"] == (99.0, 99.0)
    finally:
        if page is not None:
            page.close()
        shutil.move(kept, target)
