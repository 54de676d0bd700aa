"""Collection against a hostile class (issue 17, items 2 to 6): what students control before
the sandbox (their folders, file names, zip entries, ``timestamp.txt``, the host's shared
folders) can neither stop, redirect nor forge a class run.

- the snapshot: taken once at discovery; a notebook or data folder swapped afterwards for a
  link or a named pipe changes nothing (nothing hangs, the hash is that of what was graded);
- containment: one submission's file names, timestamp or zip entries fail that submission only;
- lateness: a zip entry's time, never a ``timestamp.txt`` outside nbgrader's ``submitted/``;
- the host: the work folder and the uid locks are not names a local user can take first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlmcourse.grading import pipeline
from mlmcourse.grading.grade.trusted import prepare_workdir
from mlmcourse.grading.inputs import collect
from mlmcourse.grading.inputs.collect import discover, parse_timestamp
from mlmcourse.grading.inputs.lms import SAFE_ID
from mlmcourse.grading.sandbox import uids

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """Fail (rather than hang the suite) if the block blocks, e.g. opening a named pipe."""
    def stop(*_: object) -> None:
        raise AssertionError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _write(path: Path, data: bytes = NOTEBOOK) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _contents(files: list[tuple[str, str]]) -> dict[str, bytes]:
    return {relative: Path(path).read_bytes() for path, relative in files}


# --- the snapshot ------------------------------------------------------------------------------


def test_files_are_swapped_after_discovery_and_the_snapshot_is_graded(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _write(subs / "ana" / "softmax.ipynb", b'{"blank": true}')
    _write(subs / "ana" / "data" / "notes.txt", b"original notes")
    _write(subs / "bo" / "softmax.ipynb", b'{"bo": true}')
    instructor = _write(tmp_path / "course" / "source" / "softmax.ipynb", b'{"solution": 1}')
    secret = _write(tmp_path / "root-only" / "notes.txt", b"a root-only secret")
    secret.chmod(0o600)
    secret.parent.chmod(0o700)
    staging = tmp_path / "staging"
    found = {s.student_id: s for s in discover(subs, "softmax", staging)[0]}
    before = {i: (_contents(s.files), s.sha256, s.notebook) for i, s in found.items()}

    # after discovery: the notebook and the data folder become links, bo's notebook a pipe
    (subs / "ana" / "softmax.ipynb").unlink()
    (subs / "ana" / "softmax.ipynb").symlink_to(instructor)
    (subs / "ana" / "data" / "notes.txt").unlink()
    (subs / "ana" / "data").rmdir()
    (subs / "ana" / "data").symlink_to(secret.parent, target_is_directory=True)
    (subs / "bo" / "softmax.ipynb").unlink()
    os.mkfifo(subs / "bo" / "softmax.ipynb")

    snapshot = staging / "snapshot"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o700 and snapshot.stat().st_uid == os.getuid()
    with no_hang():
        for student_id, sub in found.items():
            assert sub.notebook is not None and sub.notebook.is_relative_to(snapshot)
            assert all(Path(p).is_relative_to(snapshot) for p, _ in sub.files)
            work = prepare_workdir(tmp_path, sub.files)  # what a worker copies for the sandbox
            copied = {str(p.relative_to(work)): p.read_bytes()
                      for p in work.rglob("*") if p.is_file()}
            assert copied == before[student_id][0] == _contents(sub.files)
    assert before["ana"][0] == {"softmax.ipynb": b'{"blank": true}',
                                "data/notes.txt": b"original notes"}
    # the hash is that of the graded bytes: the originals, discovered afresh, hash the same
    originals = tmp_path / "originals"
    _write(originals / "ana" / "softmax.ipynb", b'{"blank": true}')
    _write(originals / "ana" / "data" / "notes.txt", b"original notes")
    _write(originals / "bo" / "softmax.ipynb", b'{"bo": true}')
    again = {s.student_id: s.sha256 for s in discover(originals, "softmax", tmp_path / "s2")[0]}
    assert again == {i: before[i][1] for i in found}


def test_links_pipes_and_devices_are_never_opened_at_any_depth(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _write(subs / "ana" / "softmax.ipynb")
    os.mkfifo(subs / "ana" / "pipe.csv")
    (subs / "ana" / "deep" / "er").mkdir(parents=True)
    os.mkfifo(subs / "ana" / "deep" / "er" / "pipe.txt")
    (subs / "ana" / "deep" / "er" / "passwd").symlink_to("/etc/passwd")
    (subs / "ana" / "deep" / "up").symlink_to(subs, target_is_directory=True)
    os.mkfifo(subs / "ana" / "timestamp.txt")
    _write(subs / "bo" / "data.csv", b"1,2")
    os.mkfifo(subs / "bo" / "softmax.ipynb")  # the notebook itself is a pipe
    with no_hang():
        found = {s.student_id: s for s in discover(subs, "softmax", tmp_path / "staging")[0]}
    assert [rel for _, rel in found["ana"].files] == ["softmax.ipynb"]
    assert found["ana"].problem is None and found["ana"].submitted_at is None
    assert "no notebook softmax.ipynb" in found["bo"].problem


def test_a_submission_over_the_limits_fails_alone(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _write(subs / "ana" / "softmax.ipynb")
    _write(subs / "many" / "softmax.ipynb")
    for i in range(collect.MAX_SUBMISSION_ENTRIES):
        (subs / "many" / f"f{i}.txt").touch()
    _write(subs / "large" / "softmax.ipynb")
    with open(subs / "large" / "big.bin", "wb") as handle:
        handle.truncate(collect.MAX_SUBMISSION_BYTES + 1)  # sparse: no disk used
    deep = subs / "deep"
    _write(deep / "softmax.ipynb")
    _write(deep.joinpath(*["d"] * (collect.MAX_DEPTH + 1), "x.txt"), b"x")
    found = {s.student_id: s for s in discover(subs, "softmax", tmp_path / "staging")[0]}
    assert found["ana"].problem is None
    assert "more than 1000 files" in found["many"].problem
    assert "larger than 50 MB" in found["large"].problem
    assert "nested more than" in found["deep"].problem
    assert all(s.notebook is None and not s.files for i, s in found.items() if i != "ana")


# --- one submission never ends the run ---------------------------------------------------------


def test_a_file_name_that_is_not_utf8_fails_that_submission_only(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _write(subs / "ana" / "softmax.ipynb")
    _write(subs / "bo" / "softmax.ipynb")
    with open(os.fsencode(subs / "bo") + b"/data-\xff\xfe.csv", "wb") as handle:
        handle.write(b"1")
    _write(Path(os.fsdecode(os.fsencode(subs) + b"/cy\xff")) / "softmax.ipynb")  # its id
    found, warnings = discover(subs, "softmax", tmp_path / "staging")
    by_id = {s.student_id: s for s in found}
    (cy,) = set(by_id) - {"ana", "bo"}  # a folder name that is not UTF-8: a safe id of its own
    assert cy.startswith("cy-") and SAFE_ID.fullmatch(cy) and by_id[cy].problem is None
    assert by_id["ana"].problem is None
    assert "not valid UTF-8" in by_id["bo"].problem
    json.dumps(by_id["bo"].problem).encode("utf-8")  # storable: no lone surrogate in it
    assert warnings == []


def test_ids_that_are_not_exactly_what_they_show_are_refused(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _write(subs / "ana" / "softmax.ipynb")
    _write(subs / "ana\n" / "softmax.ipynb")  # shows as "ana" in most places
    _write(subs / "bo\n_softmax.ipynb")
    found, warnings = discover(subs, "softmax", tmp_path / "staging")
    ids = sorted(s.student_id for s in found)
    # each is graded, under an id of its own that shows it is not "ana" or "bo"
    assert len(ids) == 3 and "ana" in ids and "bo" not in ids and warnings == []
    assert all(SAFE_ID.fullmatch(i) for i in ids) and len({i[:3] for i in ids}) == 2


def test_a_zip_entry_that_cannot_be_extracted_fails_its_student_only(tmp_path: Path) -> None:
    archive = tmp_path / "lms.zip"
    long_name = "x" * 300 + ".csv"  # longer than any file system allows a name to be
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ana/softmax.ipynb", NOTEBOOK)
        zf.writestr("bo/softmax.ipynb", NOTEBOOK)
        zf.writestr(f"bo/{long_name}", "1")
        zf.writestr(f"cy_{long_name}.ipynb", NOTEBOOK)  # a flat notebook, its only file
        zf.writestr("dee/softmax.ipynb", NOTEBOOK)
        zf.writestr("dee/softmax.ipynb/x", "a file where a folder would have to be")
    found, _ = discover(archive, "softmax", tmp_path / "staging")
    by_id = {s.student_id: s for s in found}
    assert set(by_id) == {"ana", "bo", "cy", "dee"} and by_id["ana"].problem is None
    for student_id in ("bo", "cy", "dee"):
        assert "cannot be extracted" in by_id[student_id].problem, student_id
        assert by_id[student_id].notebook is None


@pytest.mark.parametrize("text", [
    "2026-11-30 18:30:00.000000 ../../../../etc/passwd",  # a file as a time-zone key
    "2026-11-30 18:30:00.000000 America/New_York",  # a real key: still never looked up
    "2026-11-30 18:30:00 +99:00", "99999-01-01 00:00:00", "0000-01-01 00:00:00",
    "0001-01-01 00:00:00", "9999-12-31 23:59:59",  # no date computed with can be that far
    "9999-12-31 23:59:59 -23:59",  # past the largest datetime once in UTC
    "2026-11-30 18:30:00" + "0" * 10_000, "2026-02-30 12:00:00", "tomorrow", "",
])
def test_crafted_timestamps_are_refused_without_reading_any_file(text: str, tmp_path: Path,
                                                                 monkeypatch) -> None:
    import dateutil.tz

    monkeypatch.setattr(dateutil.tz, "gettz", lambda *_: pytest.fail("a zone was looked up"))
    with pytest.raises(ValueError, match="timestamp.txt"):
        parse_timestamp(text)
    tree = tmp_path / "submitted"
    _write(tree / "ana" / "softmax" / "softmax.ipynb")
    _write(tree / "ana" / "softmax" / "timestamp.txt", text.encode())
    _write(tree / "bo" / "softmax" / "softmax.ipynb")
    found, _ = discover(tree, "softmax", tmp_path / "staging")
    assert [(s.student_id, s.problem, s.submitted_at) for s in found] == [
        ("ana", None, None), ("bo", None, None)]


def test_timestamps_in_the_formats_nbgrader_writes() -> None:
    stamp = dt.datetime(2026, 11, 30, 18, 30, 0, 123456)
    for text in ["2026-11-30 18:30:00.123456 UTC", "2026-11-30 18:30:00.123456",
                 "2026-11-30T18:30:00.123456Z", "2026-11-30 19:30:00.123456+01:00",
                 "2026-11-30 13:30:00.123456 -0500", " 2026-11-30 18:30:00.123456 GMT\n"]:
        assert parse_timestamp(text) == stamp, text
    # nbgrader submit (default format and time zone), nbgrader zip_collect (isoformat(' '))
    now = dt.datetime(2026, 11, 30, 18, 30, 0, 123456, tzinfo=dt.UTC)
    assert parse_timestamp(now.strftime("%Y-%m-%d %H:%M:%S.%f %Z")) == stamp
    assert parse_timestamp(now.isoformat(" ")) == stamp


NAMES = st.binary(min_size=1, max_size=300).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile's, for duplicate entries
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, max_size=4), stamp=st.text(max_size=60),
       entries=st.lists(st.text(min_size=1, max_size=300), max_size=4))
@example(names=[], stamp="", entries=["0", "\x00"])  # a zip entry whose name is empty
def test_no_file_name_timestamp_or_zip_entry_stops_the_others(names: list[bytes], stamp: str,
                                                              entries: list[str]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        tree = root / "submitted"
        _write(tree / "honest" / "softmax" / "softmax.ipynb")
        hostile = os.fsencode(tree / "hostile" / "softmax")
        _write(Path(os.fsdecode(hostile)) / "softmax.ipynb")
        _write(Path(os.fsdecode(hostile)) / "timestamp.txt", stamp.encode("utf-8", "replace"))
        for name in names:
            try:
                with open(hostile + b"/" + name, "wb") as handle:
                    handle.write(b"1")
            except OSError:
                pass  # a name the file system refuses is no one's to hand in
        found, warnings = discover(root, "softmax", root / "staging")
        honest = {s.student_id: s for s in found}["honest"]
        assert honest.problem is None and _contents(honest.files) == {"softmax.ipynb": NOTEBOOK}
        json.dumps([(s.student_id, s.problem) for s in found] + warnings).encode("utf-8")

        archive = root / "lms.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("honest/softmax.ipynb", NOTEBOOK)
            for i, entry in enumerate(entries):
                info = zipfile.ZipInfo("entry", date_time=(2026, 1, 1, 0, 0, 0))
                # set afterwards, as a hand-made zip may have it: ZipInfo() cuts a name at a NUL
                info.filename = entry if i % 2 else f"hostile/{entry}"
                zf.writestr(info, b"1")
        found, warnings = discover(archive, "softmax", root / "zip-staging")
        honest = {s.student_id: s for s in found}["honest"]
        assert honest.problem is None and _contents(honest.files) == {"softmax.ipynb": NOTEBOOK}
        json.dumps([(s.student_id, s.problem) for s in found] + warnings).encode("utf-8")


# --- lateness ----------------------------------------------------------------------------------


def test_lateness_comes_from_the_zip_entry_or_nbgraders_tree_only(tmp_path: Path) -> None:
    late = dt.datetime(2026, 12, 1, 9, 15)
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("ana/softmax.ipynb", late.timetuple()[:6]), NOTEBOOK)
        zf.writestr("ana/timestamp.txt", "2026-11-30 16:00:00.000000 UTC")  # "on time"
    (ana,), _ = discover(archive, "softmax", tmp_path / "s1")
    assert ana.submitted_at == late

    shared = tmp_path / "shared"  # a shared folder the students write to: no time of record
    _write(shared / "bo" / "softmax.ipynb")
    _write(shared / "bo" / "timestamp.txt", b"2026-11-30 16:00:00.000000 UTC")
    _write(shared / "cy" / "softmax" / "softmax.ipynb")  # looks like nbgrader's tree
    _write(shared / "cy" / "softmax" / "timestamp.txt", b"2026-11-30 16:00:00.000000 UTC")
    found, _ = discover(shared, "softmax", tmp_path / "s2")
    assert [(s.student_id, s.submitted_at) for s in found] == [("bo", None), ("cy", None)]

    tree = tmp_path / "course" / "submitted"  # nbgrader's own: its timestamp.txt holds
    _write(tree / "dee" / "softmax" / "softmax.ipynb")
    _write(tree / "dee" / "softmax" / "timestamp.txt", b"2026-11-30 16:00:00.000000 UTC")
    (dee,), _ = discover(tmp_path / "course", "softmax", tmp_path / "s3")
    assert dee.submitted_at == dt.datetime(2026, 11, 30, 16)


# --- the host's shared folders -----------------------------------------------------------------

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_names_a_local_user_takes_first_neither_stop_nor_redirect_a_run(
        tmp_path: Path, unavailable) -> None:
    if os.geteuid() != 0:
        unavailable("reserving sandbox uids needs root")
    course = corpus.write_course(tmp_path / "course")
    taken = [Path(tempfile.gettempdir()) / f"mlmcourse-grade-{n}"
             for n in (*(uids.FIRST_SANDBOX_UID + b * uids.UID_BLOCK for b in range(4)),
                       os.getpid())]
    taken.append(Path("/run/lock/mlmcourse-grade-uids"))  # where the locks used to be
    made = []
    for i, path in enumerate(taken):
        if not os.path.lexists(path):  # a local user's: folders and links to root's files
            command = ["mkdir", str(path)] if i % 2 else ["ln", "-s", "/etc", str(path)]
            subprocess.run(AS_NOBODY + command, check=True)
            made.append(path)
    try:
        run = pipeline.prepare(pipeline.Settings("softmax", tmp_path / "subs", tmp_path / "out",
                                                 course, 1, 10.0))
        try:
            info = run.workroot.lstat()
            assert run.workroot not in taken and run.workroot.parent == Path(tempfile.gettempdir())
            assert stat.S_ISDIR(info.st_mode) and info.st_uid == 0
            assert stat.S_IMODE(info.st_mode) == 0o700
            locks = uids.LOCK_DIR.lstat()
            assert stat.S_ISDIR(locks.st_mode) and locks.st_uid == 0
            assert stat.S_IMODE(locks.st_mode) == 0o700
            parent = uids.LOCK_DIR.parent.stat()  # nobody but root can create the name
            assert parent.st_uid == 0 and not parent.st_mode & 0o022
            assert uids.left_behind(run.uid_lock) == str(run.workroot)
        finally:
            pipeline.finish(run)
        assert not run.workroot.exists()
    finally:
        for path in made:
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def test_the_uid_lock_folder_is_refused_unless_it_is_roots_own(tmp_path: Path, monkeypatch,
                                                               unavailable) -> None:
    if os.geteuid() != 0:
        unavailable("root's own folders need root")
    parent = tmp_path / "run"
    parent.mkdir(mode=0o755)
    monkeypatch.setattr(uids, "LOCK_DIR", parent / "locks")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (parent / "locks").symlink_to(elsewhere)
    with pytest.raises(uids.UidsUnavailable, match="not a folder"):
        uids.reserve_block()
    assert not list(elsewhere.iterdir())  # no lock file made through the link
    (parent / "locks").unlink()
    (parent / "locks").mkdir(mode=0o700)
    os.chown(parent / "locks", 65534, 65534)
    with pytest.raises(uids.UidsUnavailable, match="not root's own"):
        uids.reserve_block()
    os.chown(parent / "locks", 0, 0)
    (parent / "locks" / "0.lock").symlink_to(elsewhere / "target")
    with pytest.raises(uids.UidsUnavailable, match="cannot be opened"):  # never through a link
        uids.reserve_block()
    assert not (elsewhere / "target").exists()
    (parent / "locks" / "0.lock").unlink()
    parent.chmod(0o777)
    with pytest.raises(uids.UidsUnavailable, match="only root can write"):
        uids.reserve_block()


def test_only_a_killed_runs_own_work_folder_is_removed(tmp_path: Path, unavailable) -> None:
    if os.geteuid() != 0:
        unavailable("root's own folders need root")
    left = Path(tempfile.mkdtemp(prefix=pipeline.WORKROOT_PREFIX))
    pipeline._remove_left_behind(left)
    assert not left.exists()
    theirs = Path(tempfile.gettempdir()) / f"{pipeline.WORKROOT_PREFIX}{os.getpid()}-theirs"
    link = Path(tempfile.gettempdir()) / f"{pipeline.WORKROOT_PREFIX}{os.getpid()}-link"
    target = tmp_path / "kept"
    target.mkdir(mode=0o700)
    (target / "file").touch()
    try:
        subprocess.run(AS_NOBODY + ["mkdir", "-m", "700", str(theirs)], check=True)
        link.symlink_to(target, target_is_directory=True)
        for path in (theirs, link, target):
            pipeline._remove_left_behind(path)
        assert theirs.is_dir() and (target / "file").exists()
    finally:
        subprocess.run(["rm", "-rf", str(theirs), str(link)], check=True)


# --- a class run -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_class_run_grades_the_snapshot_and_contains_each_submission(
        tmp_path: Path, monkeypatch, unavailable) -> None:
    if os.geteuid() != 0:
        unavailable("the sandbox needs root")
    course = corpus.write_course(tmp_path / "course")
    source = corpus.source_notebook()
    good, blank = corpus.solved(source), corpus.release(source)
    reader = corpus._with(blank, "answer_cell",
                          'answer_valid = open("data/notes.txt").read().strip()')
    subs, out = tmp_path / "subs", tmp_path / "out"
    notebooks = {"honest": good, "ana": reader, "bo": good, "cy": good,
                 "big": corpus._with(good, "answer_cell", "answer_valid = 10**400")}
    for student_id, nb in notebooks.items():
        _write(subs / student_id / "softmax.ipynb", json.dumps(nb).encode())
    _write(subs / "ana" / "data" / "notes.txt", b"original notes")
    _write(Path(os.fsdecode(os.fsencode(subs / "cy") + b"/\xff.csv")), b"1")
    secret = _write(tmp_path / "root-only" / "notes.txt", b"a root-only secret")
    secret.parent.chmod(0o700)
    discovered: dict[str, str] = {}
    collect_as_usual = pipeline.collect

    def collect_then_swap(run: pipeline.Run) -> list[collect.Submission]:
        found = collect_as_usual(run)
        discovered.update({s.student_id: s.sha256 for s in found})
        (subs / "ana" / "softmax.ipynb").unlink()  # the source notebook: full marks if read
        (subs / "ana" / "softmax.ipynb").symlink_to(course / "source" / "softmax" /
                                                    "softmax.ipynb")
        (subs / "ana" / "data" / "notes.txt").unlink()
        (subs / "ana" / "data").rmdir()
        (subs / "ana" / "data").symlink_to(secret.parent, target_is_directory=True)
        (subs / "bo" / "softmax.ipynb").unlink()
        os.mkfifo(subs / "bo" / "softmax.ipynb")
        return found

    monkeypatch.setattr(pipeline, "collect", collect_then_swap)
    with no_hang(900):
        rows = pipeline.grade_class(pipeline.Settings("softmax", subs, out, course, 2, 60.0),
                                    say=lambda _: None)
    by_id = {r.student_id: r for r in rows}
    for student_id in ("honest", "bo", "big"):
        assert by_id[student_id].cells["test_softmax"].passed, student_id
    assert by_id["ana"].answers["answer_valid"] == "original notes"
    assert not by_id["ana"].cells["test_softmax"].passed and by_id["ana"].score == 0
    assert by_id["cy"].status == "failed" and "UTF-8" in by_id["cy"].reason
    for student_id in notebooks:
        stored = json.loads((out / "results" / f"{student_id}.json").read_text())
        assert stored["submission_sha"] == discovered[student_id], student_id
    assert "root-only secret" not in "".join(p.read_text() for p in out.rglob("*.html"))
    assert (out / "report.html").exists() and by_id["big"].answers["answer_valid"] == 10**400
