"""``mlmcourse cluster``: a class graded through a real Dask cluster on 127.0.0.1 (a scheduler
and two workers started by these tests through ``mlmcourse cluster``, stopped by process
group): the same scores as a local run, graded by an instructor without root; a worker without
root refused and named; mutual TLS only (plain TCP only on loopback with a flag for tests);
nothing a worker sends unpickled by the client; a worker or the scheduler killed mid-class."""

from __future__ import annotations

import contextlib
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
from typing import Any

import pytest
from conftest import free_port, stop_group

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

MLMCOURSE = [sys.executable, "-m", "mlmcourse.cli"]
STARTUP_SECONDS = 240.0  # a worker imports torch and forks its slots: slow on a busy machine
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
"""A worker that is not root: uid ``nobody``, allowed only to read every file (this
interpreter and the certificates may be in root's folders), as a grading machine's ordinary
user would be."""


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

    def __init__(self, folder: Path, tls: bool = True) -> None:
        """Mutual TLS with new certificates, or (``tls=False``) plain TCP on 127.0.0.1 with
        ``--insecure-loopback``."""
        self.folder, self.certs = folder, folder / "certs"
        if tls:
            subprocess.run([*MLMCOURSE, "cluster", "certs", str(self.certs)], check=True,
                           capture_output=True)
        port = free_port()
        self.address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{port}"
        self.options = ["--certs", str(self.certs)] if tls else ["--insecure-loopback"]
        self.processes: dict[str, subprocess.Popen] = {}
        self._start("scheduler", ["scheduler", *self.options, "--port", str(port)],
                    "listening on")

    def _start(self, name: str, words: list[str], ready: str,
               prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        scratch = self.folder / f"{name}-tmp"  # the worker's own temporary folder
        scratch.mkdir(parents=True)
        os.chown(scratch, NOBODY if prefix else 0, NOBODY if prefix else 0)
        with log.open("wb") as out:
            process = subprocess.Popen([*prefix, *MLMCOURSE, "cluster", *words], stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "TMPDIR": str(scratch)})
        self.processes[name] = process
        _wait_for(log, ready, process)
        return process

    def add_worker(self, name: str, slots: int = 1, as_nobody: bool = False
                   ) -> subprocess.Popen:
        return self._start(name, ["worker", self.address, *self.options,
                                  "--slots", str(slots), "--timeout", "15"], "Registered to",
                           tuple(AS_NOBODY) if as_nobody else ())

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            stop_group(process)


@contextlib.contextmanager
def _started(folder: Path, workers: int, tls: bool = True) -> Iterator[Cluster]:
    """A scheduler and ``workers`` workers of one slot each, stopped on leaving."""
    started = Cluster(folder, tls)
    try:
        for number in range(1, workers + 1):
            started.add_worker(f"worker-{number}")
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster(tmp_path: Path, needs_root: None) -> Iterator[Cluster]:
    """A scheduler and two workers of one slot each."""
    with _started(tmp_path / "cluster", 2) as started:
        yield started


def _class(folder: Path, names: list[str], copies: int = 0) -> tuple[Path, Path]:
    """The hostile corpus's course and the submissions ``names`` (plus ``copies`` more students
    handing in honest_1's notebook)."""
    course = corpus.write_course(folder / "course")
    subs = corpus.write_submissions(folder / "subs", names, course=course, out=folder / "out",
                                    submissions=folder / "subs")
    for index in range(copies):
        shutil.copytree(subs / "honest_1", subs / f"student_{index}")
    return course, subs


def _grade(folder: Path, *options: str, as_nobody: bool = False
           ) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``mlmcourse grade`` of the class in ``folder``; ``as_nobody``: as an instructor without
    root (uid nobody, owning ``folder``, which also holds its home)."""
    command = [*MLMCOURSE, "grade", "softmax", str(folder / "subs"), "--out",
               str(folder / "out"), "--course", str(folder / "course"), "--timeout", "15",
               *options]
    env = dict(os.environ)
    if as_nobody:
        command = [*AS_NOBODY, *command]
        (folder / "home").mkdir()
        env["HOME"] = str(folder / "home")
        for path in (folder, *folder.rglob("*")):
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    rows = list(csv.DictReader((folder / "out" / "grades.csv").open())) \
        if (folder / "out" / "grades.csv").exists() else []
    return done, rows


@pytest.mark.slow
def test_a_class_graded_through_the_cluster_matches_a_local_run(
        tmp_path: Path, cluster: Cluster) -> None:
    # a third worker that is not root joins, is named with its reason and grades nothing
    cluster.add_worker("worker-nobody", slots=2, as_nobody=True)
    names = ["honest_1", "honest_2", "always_equal", "os_exit", "edit_test_cells"]
    for where in ("local", "instructor"):
        _class(tmp_path / where, names)
    local, local_rows = _grade(tmp_path / "local", "--jobs", "2")
    # the instructor's side runs without root, with a copy of the client's certificate
    mine = tmp_path / "instructor" / "certs"
    mine.mkdir(mode=0o700)
    for name in ("ca.pem", "client.pem"):
        shutil.copy(cluster.certs / name, mine / name)
    remote, remote_rows = _grade(tmp_path / "instructor", "--cluster", cluster.address,
                                 "--certs", str(mine), as_nobody=True)
    assert remote.returncode == local.returncode == 1, remote.stderr[-2000:]  # os_exit fails
    assert remote_rows == local_rows  # every cell's points, status and reason
    assert (tmp_path / "instructor" / "out" / "grades.csv").stat().st_uid == NOBODY
    assert {r["student_id"] for r in remote_rows} == set(names)
    refusals = [line for line in remote.stderr.splitlines() if "refused to grade" in line]
    assert len(refusals) == 1 and "needs root" in refusals[0], remote.stderr[-2000:]


@pytest.mark.slow
def test_plain_tcp_only_on_loopback_with_the_flag_and_the_client_unpickles_nothing(
        tmp_path: Path, needs_root: None) -> None:
    from distributed import Client

    from mlmcourse.grading.cluster.plain import DESERIALIZERS, PlainClient, WorkerRaised

    for words in (["scheduler", "--insecure-loopback", "--host", "0.0.0.0"],
                  ["worker", "tcp://10.0.0.1:8786", "--insecure-loopback"],
                  ["worker", "tcp://127.0.0.1:8786", "--certs", str(tmp_path)]):
        refused = subprocess.run([*MLMCOURSE, "cluster", *words], capture_output=True,
                                 text=True, timeout=120)
        assert refused.returncode == 2 and "tcp://" in refused.stderr, (words, refused.stderr)
    # what a worker could send back if it were made to: an exception whose unpickling leaves a
    # file named for the process that unpickles it (the worker itself checks that it loads)
    marker = f"{tmp_path}/unpickled-in-"
    here = Path(f"{marker}{os.getpid()}")

    class Trap(Exception):
        def __reduce__(self):
            return (eval, (f"(open({marker!r} + str(__import__('os').getpid()), 'w').close(), "
                           "RuntimeError('trap'))[1]",))

    def returns_trap() -> Trap:
        return Trap()

    def raises_trap() -> None:
        raise Trap()

    def diagnostics(dask_worker: Any = None, dask_scheduler: Any = None
                    ) -> tuple[bool, int, int]:
        """Whether a Dask server profiles its threads, and its tick's and system sample's
        periods in ms (run in the server by ``Client.run`` and ``Client.run_on_scheduler``)."""
        callbacks = (dask_worker or dask_scheduler).periodic_callbacks
        return ("profile" in callbacks, callbacks["tick"].callback_time,
                callbacks["monitor"].callback_time)

    with _started(tmp_path / "cluster", 1, tls=False) as cluster:
        _class(tmp_path, ["honest_1"])
        unflagged, _ = _grade(tmp_path, "--cluster", cluster.address)
        assert unflagged.returncode == 2 and "mutual TLS" in unflagged.stderr
        done, rows = _grade(tmp_path, "--cluster", cluster.address, "--insecure-loopback")
        assert done.returncode == 0, done.stderr[-2000:]
        assert [(r["student_id"], r["status"]) for r in rows] == [("honest_1", "graded")]
        with PlainClient(cluster.address, set_as_default=False,
                         deserializers=DESERIALIZERS) as plain:
            with pytest.raises(TypeError, match="only able to deserialize"):
                plain.submit(returns_trap, pure=False).result(timeout=120)
            with pytest.raises(WorkerRaised):
                plain.submit(raises_trap, pure=False).result(timeout=120)
        assert not here.exists()
        with Client(cluster.address, set_as_default=False) as dask_default:  # the control
            assert str(dask_default.submit(returns_trap, pure=False).result(timeout=120)
                       ) == "trap"
            assert here.exists()
            here.unlink()
            with pytest.raises(RuntimeError, match="trap"):
                dask_default.submit(raises_trap, pure=False).result(timeout=120)
            assert here.exists()
            # Dask's dashboard diagnostics are off or slow in our scheduler and worker (QUIET)
            assert set(dask_default.run(diagnostics).values()) == {(False, 1000, 5000)}
            assert dask_default.run_on_scheduler(diagnostics) == (False, 1000, 5000)


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


@pytest.mark.parametrize(("options", "message"), [
    (["--certs", "certs"], "--certs and --insecure-loopback go with --cluster"),
    (["--cluster", "tls://127.0.0.1:8786"], "needs --certs DIR"),
    (["--cluster", "tcp://127.0.0.1:8786"], "only over mutual TLS"),
    (["--cluster", "tcp://192.0.2.7:8786", "--insecure-loopback"], "only on a loopback"),
    (["--cluster", "tcp://localhost:8786", "--insecure-loopback"], "only on a loopback"),
    (["--cluster", "grader.example.org", "--certs", "certs"], "not an address"),
])
def test_cluster_options_are_checked_before_anything_is_written(
        tmp_path: Path, options: list[str], message: str) -> None:
    _class(tmp_path, ["honest_1"])
    done, _ = _grade(tmp_path, *options)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_workers_that_dask_jobqueue_starts_grade_the_class(tmp_path: Path,
                                                           needs_root: None) -> None:
    # dask-jobqueue's LocalCluster runs each job script as a process here, as SLURMCluster has
    # Slurm run it on a node: the same generated command line, the same in-process scheduler
    import dask
    from dask_jobqueue.local import LocalCluster as JobQueueCluster
    from distributed.security import Security

    from mlmcourse.grading.cluster.scheduler import NO_HTTP

    certs = tmp_path / "certs"
    subprocess.run([*MLMCOURSE, "cluster", "certs", str(certs)], check=True, capture_output=True)
    pem = {role: str(certs / f"{role}.pem") for role in ("ca", "scheduler", "worker", "client")}
    security = Security(require_encryption=True, tls_ca_file=pem["ca"],
                        **{f"tls_{role}_{part}": pem[role] for role in
                           ("scheduler", "worker", "client") for part in ("cert", "key")})
    names = ["honest_1", "always_equal", "os_exit"]
    for where in ("local", "cluster"):
        _class(tmp_path / where, names)
    with dask.config.set(NO_HTTP), JobQueueCluster(
            cores=1, processes=1, memory="4GiB", python=sys.executable,
            worker_command="mlmcourse.cli cluster worker",
            worker_extra_args=["--timeout", "15"], protocol="tls", security=security,
            scheduler_options={"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
            ) as jobs:
        assert "-m mlmcourse.cli cluster worker tls://127.0.0.1:" in jobs.job_script()
        jobs.scale(jobs=2)
        remote, remote_rows = _grade(tmp_path / "cluster", "--cluster", jobs.scheduler_address,
                                     "--certs", str(certs))
    local, local_rows = _grade(tmp_path / "local", "--jobs", "2")
    assert remote.returncode == local.returncode == 1, remote.stderr[-2000:]  # os_exit fails
    assert remote_rows == local_rows


@pytest.mark.parametrize(("words", "message"), [
    (["--tls-cert", "worker.pem"], "--tls-key together"),
    (["--certs", "certs", "--tls-ca-file", "ca.pem", "--tls-cert", "w.pem", "--tls-key", "w.pem"],
     "--tls-key together"),
    (["--certs", "certs", "--protocol", "tcp"], "not a tcp:// address"),
    (["--tls-ca-file", "ca.pem", "--tls-cert", "w.pem", "--tls-key", "w.pem"], "does not exist"),
])
def test_a_workers_options_are_checked_before_it_starts(tmp_path: Path, words: list[str],
                                                         message: str) -> None:
    (tmp_path / "certs").mkdir()
    refused = subprocess.run([*MLMCOURSE, "cluster", "worker", "tls://127.0.0.1:8786", *words],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
