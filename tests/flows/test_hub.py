"""The hub route of the instructor guide, with real Unix users: a course account ``prof`` makes a
private course (readable by the teaching assistants' group) that uses the hub's exchange, set in
the hub's global nbgrader configuration; two students fetch and submit with nbgrader's own
commands, run as themselves; ``prof`` collects; root grades; the course account reads what
grading wrote, formgrader run as ``prof`` opens the graded notebooks, a teaching assistant reads
the grades, students read nothing of the course; the feedback goes back through nbgrader's
``release_feedback`` and each student's ``fetch_feedback``.
"""

from __future__ import annotations

import csv
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import free_port, stop_group

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COURSE_ID = "hub101"


class Hub:
    """A scratch machine: users, a world-readable base folder, the hub's global configuration."""

    def __init__(self, base: Path, tag: str) -> None:
        self.base, self.tag = base, tag
        self.group = f"mlmtas{tag}"
        self.users: dict[str, str] = {}  # role -> user name
        self.exchange = base / "exchange"
        self.etc = base / "etc" / "jupyter"

    def add_user(self, role: str, *groups: str) -> str:
        name = f"mlm{role}{self.tag}"
        home = self.base / "home" / name
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--user-group",
                        *(["--groups", ",".join(groups)] if groups else []), name], check=True)
        self.users[role] = name
        home.mkdir(parents=True)
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        return name

    def home(self, role: str) -> Path:
        return Path(pwd.getpwnam(self.users[role]).pw_dir)

    def env(self, role: str | None) -> dict[str, str]:
        home = str(self.home(role)) if role else str(self.base / "root")
        user = self.users[role] if role else "root"
        return {"HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
                "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                "JUPYTER_CONFIG_PATH": str(self.etc), "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, role: str | None, argv: list[str], cwd: Path,
            check: bool = True) -> subprocess.CompletedProcess:
        """``argv`` run as the user of ``role`` (root for ``None``), as a login would start it."""
        who = {}
        if role:
            entry = pwd.getpwnam(self.users[role])
            who = {"user": entry.pw_uid, "group": entry.pw_gid,
                   "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid)}
        done = subprocess.run(argv, cwd=cwd, env=self.env(role), capture_output=True, text=True,
                              timeout=900, **who)
        if check:
            assert done.returncode == 0, f"{role}: {argv}\n{done.stdout}\n{done.stderr}"
        return done

    def close(self) -> None:
        for name in self.users.values():
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", self.group], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _closed_folders() -> list[Path]:
    """Folders above this environment's Python that other users cannot traverse (a Python
    installed in root's home): a hub installs it where every user can run it."""
    pythons = {Path(sys.executable).resolve(), Path(sys.prefix), Path(sys.base_prefix)}
    return sorted({p for python in pythons for p in python.parents
                   if p.is_dir() and not p.stat().st_mode & stat.S_IXOTH})


@pytest.fixture
def hub(unavailable: Callable[[str], None]) -> Iterator[Hub]:
    if os.geteuid() != 0 or not shutil.which("useradd"):
        unavailable("the hub route needs root and useradd (real Unix users)")
    closed = {p: stat.S_IMODE(p.stat().st_mode) for p in _closed_folders()}
    for folder, mode in closed.items():  # traversable (not listable) during the test
        folder.chmod(mode | stat.S_IXOTH)
    try:
        yield from _hub()
    finally:
        for folder, mode in closed.items():
            folder.chmod(mode)


def _hub() -> Iterator[Hub]:
    base = Path(tempfile.mkdtemp(prefix="mlmcourse-hub-"))
    base.chmod(0o755)  # the machine's folders every user can traverse
    scratch = Hub(base, secrets.token_hex(3))
    try:
        subprocess.run(["groupadd", scratch.group], check=True)
        (base / "root").mkdir(mode=0o700)
        scratch.exchange.mkdir(mode=0o777)
        scratch.exchange.chmod(0o777)  # as nbgrader's documentation has the admin make it
        scratch.etc.mkdir(parents=True)
        # the hub's global nbgrader configuration
        (scratch.etc / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.Exchange.root = {str(scratch.exchange)!r}\n"
            f"c.CourseDirectory.course_id = {COURSE_ID!r}\n")
        yield scratch
    finally:
        scratch.close()


def nbgrader(*words: str) -> list[str]:
    return [str(BIN / "nbgrader"), *words]


def mlmcourse(*words: str) -> list[str]:
    return [sys.executable, "-m", "mlmcourse", *words]



def _formgrader_as(hub: Hub, role: str, course: Path) -> None:
    """The guide's formgrader command, run as ``role``, opens every graded notebook."""
    port, token = free_port(), secrets.token_hex(16)
    config = hub.home(role) / ".jupyter"
    config.mkdir(exist_ok=True)
    (config / "jupyter_server_config.py").write_text(
        f"c.ServerApp.port = {port}\nc.ServerApp.port_retries = 0\n"
        f"c.IdentityProvider.token = {token!r}\nc.ServerApp.ip = '127.0.0.1'\n")
    entry = pwd.getpwnam(hub.users[role])
    os.chown(config, entry.pw_uid, entry.pw_gid)
    os.chown(config / "jupyter_server_config.py", entry.pw_uid, entry.pw_gid)
    guide = (ROOT / "book" / "instructor_guide.md").read_text()
    command = next(line for line in guide.splitlines()
                   if line.startswith("jupyter server") and "formgrader" in line)
    server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=course,
                              env={**hub.env(role), "JUPYTER_CONFIG_DIR": str(config)},
                              user=entry.pw_uid, group=entry.pw_gid, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def get(path: str) -> str:
        url = f"http://127.0.0.1:{port}{path}{'&' if '?' in path else '?'}token={token}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get("/api/status")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "jupyter server did not start in 120 s"
                time.sleep(0.5)
        notebooks = json.loads(get("/formgrader/api/submitted_notebooks/ex2_masking/ex2_masking"))
        assert len(notebooks) == 2
        for submission in notebooks:  # each graded notebook opens (it was a 500 when root's)
            assert "ex2_masking" in get(f"/formgrader/submissions/{submission['id']}/")
    finally:
        stop_group(server)


def _others_bits(folder: Path) -> list[str]:
    return [str(p) for p in [folder, *folder.rglob("*")]
            if not p.is_symlink() and p.stat().st_mode & 0o007]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_hub_route_with_real_users(hub: Hub, unavailable: Callable[[str], None]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from cases import variants as v

    prof = hub.add_user("prof", hub.group)
    hub.add_user("ta", hub.group)
    ana, bo = hub.add_user("ana"), hub.add_user("bo")
    course = hub.home("prof") / COURSE_ID
    hub.run("prof", mlmcourse("init", COURSE_ID, "--group", hub.group), hub.home("prof"))
    assert not _others_bits(course), "the course folder must be private"
    assert stat.S_IMODE(course.stat().st_mode) == 0o2750
    assert "Exchange.root" not in (course / "nbgrader_config.py").read_text().replace(
        "# configuration sets it (c.Exchange.root)", "")
    hub.run("prof", mlmcourse("release", "ex2_masking", "--quiet"), course)
    hub.run("prof", nbgrader("release_assignment", "ex2_masking"), course)
    assert not (course / "exchange").exists()

    # the students, as themselves, with nbgrader's commands (what the Assignments tab runs)
    for student in ("ana", "bo"):
        listed = hub.run(student, nbgrader("list"), hub.home(student))
        assert "ex2_masking" in listed.stdout + listed.stderr
        hub.run(student, nbgrader("fetch_assignment", "ex2_masking"), hub.home(student))
    fetched = hub.home("ana") / "ex2_masking" / "ex2_masking.ipynb"
    nbformat.write(v.solution_submission("ex2_masking", course), fetched)  # ana's work
    for student in ("ana", "bo"):
        hub.run(student, nbgrader("submit", "ex2_masking"), hub.home(student))
    refused = hub.run("ana", ["cat", str(course / "source" / "ex2_masking" / "ex2_masking.ipynb")],
                      hub.home("ana"), check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr

    hub.run("prof", nbgrader("collect", "ex2_masking"), course)
    graded = hub.run(None, mlmcourse("grade", "ex2_masking", "submitted", "--out",
                                     "grades/ex2_masking", "--jobs", "1"), course, check=False)
    if graded.returncode == 2 and "sandbox" in graded.stderr:
        unavailable(f"the grading sandbox cannot be set up here: {graded.stderr[-500:]}")
    assert graded.returncode == 0, graded.stderr[-3000:]

    # what grading wrote belongs to the course account, and others get nothing
    written = [course / "grades", course / "autograded", course / "feedback",
               course / "gradebook.db"]
    for path in written:
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            info = p.lstat()
            assert (pwd.getpwuid(info.st_uid).pw_name, info.st_gid) == \
                (prof, course.stat().st_gid), p
    assert not _others_bits(course / "autograded") and not _others_bits(course / "grades")
    rows = {r["student_id"]: r for r in csv.DictReader(
        hub.run("ta", ["cat", "grades/ex2_masking/grades.csv"], course).stdout.splitlines())}
    assert set(rows) == {ana, bo}
    assert rows[ana]["status"] == "needs_manual" and rows[bo]["score"] == "0"
    refused = hub.run("bo", ["cat", str(course / "grades" / "ex2_masking" / "grades.csv")],
                      hub.home("bo"), check=False)
    assert refused.returncode != 0

    _formgrader_as(hub, "prof", course)

    # feedback back through the exchange
    hub.run("prof", nbgrader("release_feedback", "ex2_masking"), course)
    for student in ("ana", "bo"):
        hub.run(student, nbgrader("fetch_feedback", "ex2_masking"), hub.home(student))
        (page,) = (hub.home(student) / "ex2_masking" / "feedback").glob("*/ex2_masking.html")
        text = page.read_text()
        assert f"feedback for {hub.users[student]}" in text
        assert "BEGIN HIDDEN" not in text and "def test" not in text
