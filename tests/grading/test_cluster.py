"""``mlmcourse cluster``: a class graded through a real Dask cluster on 127.0.0.1 (a scheduler
and two workers started by these tests through ``mlmcourse cluster``, stopped by process
group): the same scores as a local run, mutual TLS only, a worker killed mid-class."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, stop_group

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

MLMCOURSE = [sys.executable, "-m", "mlmcourse.cli"]
STARTUP_SECONDS = 240.0  # a worker imports torch and forks its slots: slow on a busy machine



def _wait_for(log: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"{log.name}: no {text!r} after {STARTUP_SECONDS:g} s")


class Cluster:
    """A scheduler and its workers, each a ``mlmcourse cluster`` process of its own session."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.certs = folder, folder / "certs"
        subprocess.run([*MLMCOURSE, "cluster", "certs", str(self.certs)], check=True,
                       capture_output=True)
        port = free_port()
        self.address = f"tls://127.0.0.1:{port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self._start("scheduler", ["scheduler", "--certs", str(self.certs), "--port", str(port)],
                    "listening on")

    def _start(self, name: str, words: list[str], ready: str) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([*MLMCOURSE, "cluster", *words], stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        _wait_for(log, ready, process)
        return process

    def add_worker(self, name: str, slots: int = 1) -> subprocess.Popen:
        return self._start(name, ["worker", self.address, "--certs", str(self.certs),
                                  "--slots", str(slots), "--timeout", "15"], "Registered to")

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            stop_group(process)


@pytest.fixture
def cluster(tmp_path: Path, needs_root: None) -> Iterator[Cluster]:
    """A scheduler and two workers of one slot each."""
    started = Cluster(tmp_path / "cluster")
    try:
        started.add_worker("worker-1")
        started.add_worker("worker-2")
        yield started
    finally:
        started.stop()


def _class(folder: Path, names: list[str], copies: int = 0) -> tuple[Path, Path]:
    """The hostile corpus's course and the submissions ``names`` (plus ``copies`` more students
    handing in honest_1's notebook)."""
    course = corpus.write_course(folder / "course")
    subs = corpus.write_submissions(folder / "subs", names, course=course, out=folder / "out",
                                    submissions=folder / "subs")
    for index in range(copies):
        shutil.copytree(subs / "honest_1", subs / f"student_{index}")
    return course, subs


def _grade(folder: Path, *options: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    command = [*MLMCOURSE, "grade", "softmax", str(folder / "subs"), "--out",
               str(folder / "out"), "--course", str(folder / "course"), "--timeout", "15",
               *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    rows = list(csv.DictReader((folder / "out" / "grades.csv").open())) \
        if (folder / "out" / "grades.csv").exists() else []
    return done, rows


@pytest.mark.slow
def test_a_class_graded_through_the_cluster_matches_a_local_run(
        tmp_path: Path, cluster: Cluster) -> None:
    names = ["honest_1", "honest_2", "always_equal", "os_exit", "edit_test_cells"]
    for where in ("local", "cluster"):
        _class(tmp_path / where, names)
    local, local_rows = _grade(tmp_path / "local", "--jobs", "2")
    remote, remote_rows = _grade(tmp_path / "cluster", "--cluster", cluster.address,
                                 "--certs", str(cluster.certs))
    assert remote.returncode == local.returncode == 1, remote.stderr[-2000:]  # os_exit fails
    assert remote_rows == local_rows  # every cell's points, status and reason
    assert {r["student_id"] for r in remote_rows} == set(names)


def _handshake(port: int, ca: Path, certificate: Path | None) -> bool:
    """Whether the scheduler talks over a TLS connection made with ``certificate`` (or none):
    it sends the first bytes of Dask's handshake."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    if certificate is not None:
        context.load_cert_chain(str(certificate))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                tls.settimeout(2)
                return tls.recv(1) != b""  # a refused certificate is told after the handshake
        except (ssl.SSLError, ConnectionError, TimeoutError):
            return False


def _plain_answer(port: int) -> bytes:
    """What the scheduler answers a plain TCP connection (nothing once it is closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"\x00" * 64)
        raw.settimeout(5)
        try:
            return raw.recv(64)
        except ConnectionResetError:
            return b""


@pytest.mark.slow
def test_a_client_without_a_valid_certificate_is_refused(tmp_path: Path,
                                                         needs_root: None) -> None:
    cluster = Cluster(tmp_path / "cluster")
    try:
        other = tmp_path / "other"
        subprocess.run([*MLMCOURSE, "cluster", "certs", str(other)], check=True,
                       capture_output=True)
        assert {p.name: os.stat(p).st_mode & 0o777 for p in cluster.certs.iterdir()} == {
            "ca.pem": 0o600, "scheduler.pem": 0o600, "worker.pem": 0o600, "client.pem": 0o600}
        port = int(cluster.address.rsplit(":", 1)[1])
        ca = cluster.certs / "ca.pem"
        assert _handshake(port, ca, cluster.certs / "client.pem")  # the control
        assert not _handshake(port, ca, None)
        assert not _handshake(port, ca, other / "client.pem")  # another CA's certificate
        assert _plain_answer(port) == b""  # closed, without a word of Dask's
        _class(tmp_path, ["honest_1"])
        plain, _ = _grade(tmp_path, "--cluster", cluster.address.replace("tls", "tcp"),
                          "--certs", str(cluster.certs))
        assert plain.returncode == 2 and "mutual TLS" in plain.stderr
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_worker_killed_mid_class_loses_nothing(tmp_path: Path, cluster: Cluster) -> None:
    # infinite_loop holds a slot for the whole timeout, so the kill lands mid-class
    course, subs = _class(tmp_path, ["infinite_loop", "honest_1"], copies=6)
    students = sorted(p.name for p in subs.iterdir())
    grader = subprocess.Popen(
        [*MLMCOURSE, "grade", "softmax", str(subs), "--out", str(tmp_path / "out"),
         "--course", str(course), "--timeout", "15", "--cluster", cluster.address,
         "--certs", str(cluster.certs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    results = tmp_path / "out" / "results"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 1:
        time.sleep(0.05)
    os.killpg(cluster.processes["worker-1"].pid, signal.SIGKILL)
    assert len(list(results.glob("*.json"))) < len(students), "the kill should land mid-class"
    _, stderr = grader.communicate(timeout=600)
    assert grader.returncode == 1, stderr[-2000:]  # infinite_loop times out
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert sorted(r["student_id"] for r in rows) == students  # each exactly once
    assert {r["student_id"]: r["status"] for r in rows if r["status"] != "graded"} == {
        "infinite_loop": "failed"}, rows
    assert sorted(p.stem for p in results.glob("*.json")) == students


@pytest.mark.slow
def test_a_scheduler_killed_mid_class_stops_the_client_and_keeps_what_was_recorded(
        tmp_path: Path, cluster: Cluster) -> None:
    course, subs = _class(tmp_path, ["infinite_loop", "honest_1"], copies=4)
    students = sorted(p.name for p in subs.iterdir())
    command = [*MLMCOURSE, "grade", "softmax", str(subs), "--out", str(tmp_path / "out"),
               "--course", str(course), "--timeout", "15"]
    grader = subprocess.Popen([*command, "--cluster", cluster.address, "--certs",
                               str(cluster.certs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    results = tmp_path / "out" / "results"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 1:
        time.sleep(0.05)
    os.killpg(cluster.processes["scheduler"].pid, signal.SIGKILL)
    _, stderr = grader.communicate(timeout=600)
    assert grader.returncode == 2, stderr[-2000:]
    assert "went away" in stderr and "run the same command again" in stderr
    kept = {p.name: p.read_text() for p in results.glob("*.json")}  # with its grading time
    assert 0 < len(kept) < len(students)
    rerun = subprocess.run([*command, "--jobs", "2"], capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 1, rerun.stderr[-2000:]  # infinite_loop times out
    after = {p.name: p.read_text() for p in results.glob("*.json")}
    assert sorted(Path(name).stem for name in after) == students
    assert {name: after[name] for name in kept} == kept  # the rerun graded only the rest
