"""The guides as executable truth: every shell command of the student guide, the instructor guide
and ``autograder/README.md`` is run as written, from the folder the guide names.

Each ``bash`` block starts with ``# in: <folder>``: the folder to run it from (one of
:data:`PLACES`), or a reason it is not run here (it clones from the network, builds the book, or
installs the wheel, which ``tests/packaging/test_wheel.py`` does). The run happens in a scratch
course: the instructor guide creates it with ``mlmcourse init``; between ``nbgrader
release_assignment`` and ``nbgrader collect`` two students submit into the exchange as ``nbgrader
submit`` does (one on time, one late); formgrader is started with the guide's ``jupyter server``
command and its assignment list and manual-grading page are loaded in Chromium; a written answer is
then scored and commented as formgrader does before the guide's ``grade`` command runs again.
The blocks that run "in a terminal of its own" (the cluster's scheduler and worker) are started in
the background, each in a session of its own, waited for until they are ready, and stopped at the
end; the class graded through them must have the rows of the local run."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import CHROMIUM, free_port, stop_group

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "book" / "instructor_guide.md", ROOT / "autograder" / "README.md",
          ROOT / "book" / "student_guide.md"]
PLACES = {"the folder that will hold the course": "parent", "the course folder": "course",
          "the folder holding the notebook": "notebook",
          "a terminal of its own (it keeps running)": "server"}
READY = {"mlmcourse cluster scheduler": "listening on", "mlmcourse cluster worker": "Registered to"}
"""What a server of the guides prints once it is ready, by its command."""
NOT_RUN = "not run by the guide test"
DUE = dt.datetime(2026, 12, 1, 17)  # the instructor guide's due date for ex2_masking
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```bash\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    guide: str
    place: str  # a value of PLACES, or "" when not run
    where: str  # the text after "# in:"
    commands: list[str]


def blocks(path: Path) -> list[Block]:
    """The ``bash`` blocks of a guide, in order, with the folder each is run from."""
    found = []
    for match in _FENCE.finditer(path.read_text(encoding="utf-8")):
        indent = len(match.group("indent"))
        lines = [line[indent:] for line in match.group("body").splitlines()]
        first = lines[0].strip() if lines else ""
        where = first.removeprefix("# in:").strip() if first.startswith("# in:") else ""
        place = "" if NOT_RUN in where else PLACES.get(where, "?")
        commands = [line for line in lines[1:] if line.strip() and not line.startswith("#")]
        found.append(Block(path.name, place, where, commands))
    return found


def test_every_command_says_where_it_runs() -> None:
    every = [b for guide in GUIDES for b in blocks(guide)]
    assert len(every) >= 12
    unknown = [(b.guide, b.where, b.commands[:1]) for b in every if b.place == "?"]
    assert not unknown, f"blocks without a known '# in: <folder>' first line: {unknown}"
    commands = [c for b in every if b.place for c in b.commands]
    assert not [c for c in commands if "nbgrader formgrader" in c], "not a command in 0.9"
    assert not [c for c in commands if re.search(r"\b[A-Z]{4,}\b", c)], "placeholders left"
    assert any(c.startswith("mlmcourse init") for c in commands)
    assert any("jupyter server" in c and "formgrader" in c for c in commands)


def test_the_students_menu_items_can_be_hidden(tmp_path: Path) -> None:
    """The guide's commands that hide nbgrader's instructor menu items from students, run on a
    scratch user configuration instead of the students' environment."""
    (block,) = [b for b in blocks(GUIDES[0]) if "labextension disable" in "\n".join(b.commands)]
    script = "\n".join(block.commands).replace("--level=sys_prefix", "--level=user")
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-ec", script], env=env, check=True, capture_output=True,
                   timeout=300)
    config = json.loads((tmp_path / "labconfig" / "page_config.json").read_text())
    hidden = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
              "@jupyter/nbgrader:course-list"}
    assert set(config["disabledExtensions"]) == set(config["lockedExtensions"]) == hidden


# --- running them ------------------------------------------------------------------------------



class Scratch:
    """The folders and environment the guides' commands run in."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.parent = tmp / "courses"
        self.notebook = tmp / "student" / "ex4_cross_entropy"
        for folder in (self.parent, self.notebook, tmp / "home", tmp / "jupyter"):
            folder.mkdir(parents=True)
        self.port, self.token = free_port(), secrets.token_hex(16)
        # what a fresh machine's user has; root may run the server only because the test is root
        (tmp / "jupyter" / "jupyter_server_config.py").write_text(
            f"c.ServerApp.port = {self.port}\nc.ServerApp.port_retries = 0\n"
            f"c.IdentityProvider.token = {self.token!r}\nc.ServerApp.allow_root = True\n"
            "c.ServerApp.ip = '127.0.0.1'\n")
        self.env = {**os.environ, "HOME": str(tmp / "home"),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "JUPYTER_CONFIG_DIR": str(tmp / "jupyter"),
                    "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter" / "runtime"),
                    "PYTHONDONTWRITEBYTECODE": "1"}
        self.course: Path | None = None

    def folder(self, place: str) -> Path:
        if place == "course":
            assert self.course is not None, "the guide uses a course before creating one"
            return self.course
        return {"parent": self.parent, "notebook": self.notebook, "server": self.tmp}[place]

    def start(self, command: str) -> subprocess.Popen:
        """Start a server of the guides in a session of its own; return once it says it is
        ready (:data:`READY`)."""
        (ready,) = [text for start, text in READY.items() if command.startswith(start)]
        log = self.tmp / f"server-{len(list(self.tmp.glob('server-*.log')))}.log"
        with log.open("wb") as out:
            server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.tmp,
                                      env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 240
        while ready not in log.read_text(errors="replace"):
            if server.poll() is not None or time.monotonic() > deadline:
                stop_group(server)
                raise AssertionError(f"{command}: not ready\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        print(f"[ready] {command}")
        return server

    def run(self, command: str, place: str, timeout: float = 900) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = subprocess.run(["bash", "-c", command], cwd=self.folder(place), env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        print(f"[{time.monotonic() - started:5.1f} s, exit {done.returncode}] ({place}) {command}")
        return done


def _submit(course: Path, student: str, nb: nbformat.NotebookNode, when: dt.datetime) -> None:
    """What ``nbgrader submit`` leaves in the exchange's inbound folder (the course's exchange is
    outside it, set by ``mlmcourse init --exchange``)."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", str(course)).load_config()
    exchange = Path(config.Exchange.root)
    assert course not in exchange.parents
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    folder = (exchange / config.CourseDirectory.course_id / "inbound"
              / f"{student}+ex2_masking+{stamp}+{secrets.token_urlsafe(9)}")
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "ex2_masking.ipynb")
    (folder / "timestamp.txt").write_text(stamp)
    (folder / "submission_secret.txt").write_text(secrets.token_hex(16))


def _students_submit(course: Path) -> None:
    from cases import variants as v

    answered = v.solution_submission("ex2_masking", course)
    _submit(course, "ana", answered, DUE - dt.timedelta(hours=5))
    late = nbformat.read(course / "release" / "ex2_masking" / "ex2_masking.ipynb", as_version=4)
    _submit(course, "bo", late, DUE + dt.timedelta(hours=16))


def _score_by_hand(course: Path) -> None:
    """What the instructor does in formgrader: a score and comments for ana's written answer."""
    from mlmcourse.grading.outputs.gradebook import open_gradebook

    with open_gradebook(course) as gb:
        grade = gb.find_grade("written_no_copy", "ex2_masking", "ex2_masking", "ana")
        grade.manual_score, grade.needs_manual_grade = 1.5, False
        comment = gb.find_comment("written_no_copy", "ex2_masking", "ex2_masking", "ana")
        comment.manual_comment = "Right idea; say why the model cannot copy."
        gb.db.commit()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _formgrader(scratch: Scratch, command: str, unavailable: Callable[[str], None]) -> None:
    """Start the guide's server, check formgrader's API, load its pages in Chromium."""
    assert scratch.course is not None
    server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=scratch.course,
                              env=scratch.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    base = f"http://127.0.0.1:{scratch.port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{base}/api/status?token={scratch.token}")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "jupyter server did not start in 120 s"
                time.sleep(0.5)
        listing = json.loads(_get(f"{base}/formgrader/api/assignments?token={scratch.token}"))
        ex2 = next(a for a in listing if a["name"] == "ex2_masking")
        assert ex2["num_submissions"] == 2, ex2
        submissions = json.loads(_get(
            f"{base}/formgrader/api/submitted_notebooks/ex2_masking/ex2_masking"
            f"?token={scratch.token}"))
        ana = next(s for s in submissions if s["student"] == "ana")
        bo = next(s for s in submissions if s["student"] == "bo")
        page_html = _get(f"{base}/formgrader/submissions/{bo['id']}/?token={scratch.token}")
        assert "output_error" in page_html  # formgrader shows why bo's tests failed
        if not CHROMIUM.exists():
            unavailable(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"{base}/formgrader/manage_assignments?token={scratch.token}")
            page.wait_for_selector("text=ex2_masking", timeout=60_000)
            page.goto(f"{base}/formgrader/submissions/{ana['id']}/?index=0")
            # the written answer's score box and comment box
            page.wait_for_selector("input.score#written_no_copy", timeout=60_000)
            page.wait_for_selector("textarea#written_no_copy-comment", timeout=60_000)
            page.goto(f"{base}/formgrader/submissions/{bo['id']}/?index=1")
            page.wait_for_selector("div.output_error", timeout=60_000)  # why bo's tests failed
            browser.close()
    finally:
        stop_group(server)


def _run_the_guides(scratch: Scratch, servers: list[subprocess.Popen],
                    unavailable: Callable[[str], None]) -> None:
    """Every block of every guide, in order (the servers started are added to ``servers``)."""
    ran: list[str] = []
    graded = 0
    for guide in GUIDES:
        for block in blocks(guide):
            if not block.place:
                continue
            if block.place == "notebook" and not any(scratch.notebook.iterdir()):
                released = scratch.course / "release" / "ex4_cross_entropy"
                (scratch.notebook / "ex4_cross_entropy.ipynb").write_bytes(
                    (released / "ex4_cross_entropy.ipynb").read_bytes())
            script = "\n".join(block.commands)
            if block.place == "server":
                (command,) = block.commands
                servers.append(scratch.start(command))
                ran.append(script)
                continue
            if "jupyter server" in script:
                _formgrader(scratch, script, unavailable)
                _score_by_hand(scratch.course)
                ran.append(script)
                continue
            if "nbgrader collect" in script and not (scratch.course / "submitted").exists():
                _students_submit(scratch.course)
            done = scratch.run("set -e\n" + script, block.place)
            output = done.stdout + done.stderr
            if "mlmcourse check" in script:  # a fresh release fails its visible tests: exit 1
                assert done.returncode in (0, 1) and "visible checks:" in output, output
            else:
                assert done.returncode == 0, f"{guide.name}: {script}\n{output[-3000:]}"
            if block.place == "parent" and scratch.course is None:
                (scratch.course,) = [p.parent for p in scratch.parent.glob("*/nbgrader_config.py")]
            graded += "mlmcourse grade" in script
            ran.append(script)
    assert graded >= 3 and len(ran) >= 13 and len(servers) == 2


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1800)  # about ten commands that each start nbgrader or a kernel
def test_the_guides_work_as_written(tmp_path: Path, unavailable: Callable[[str], None]) -> None:
    scratch = Scratch(tmp_path)
    servers: list[subprocess.Popen] = []
    try:
        _run_the_guides(scratch, servers, unavailable)
    finally:
        for server in reversed(servers):
            stop_group(server)
    course = scratch.course
    out = course / "grades" / "ex2_masking"
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    through_cluster = list(csv.DictReader((out.parent / "ex2_masking_cluster" / "grades.csv"
                                           ).open()))
    assert through_cluster == list(rows.values())  # every cell's points, status and reason
    assert rows["ana"]["status"] == "graded" and rows["ana"]["written_no_copy"] == "1.5"
    assert rows["ana"]["seconds_late"] == "0"
    assert float(rows["ana"]["score"]) == float(rows["ana"]["max_score"]) - 0.5
    assert int(rows["bo"]["seconds_late"]) == 16 * 3600
    page = (out / "feedback" / "ana" / "ex2_masking.html").read_text()
    assert "say why the model cannot copy" in page and "no answer" not in page
    assert "16 h 0 min late" in (out / "feedback" / "bo" / "ex2_masking.html").read_text()
    released = (scratch.tmp / "home" / "nbgrader-exchange").glob("*/feedback/*.html")
    assert sum("say why the model cannot copy" in p.read_text() for p in released) == 1
    exported = {r["student_id"]: r for r in
                csv.DictReader((course / "grades" / "all_assignments.csv").open())
                if r["assignment"] == "ex2_masking"}
    assert exported["bo"]["timestamp"].startswith("2026-12-02 09:00:00")
    assert exported["ana"]["timestamp"].startswith("2026-12-01 12:00:00")
    assert float(exported["ana"]["score"]) == float(rows["ana"]["final_score"])
