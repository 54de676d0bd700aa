"""The sandbox engine: what a forked child can see, write, reach and use."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlmcourse.grading.isolation import SAFE_ENV, Limits, Policy, reserve_uid_block

from mlmcourse.grading.cli.grade import hidden_paths
from mlmcourse.grading.sandbox import Sandbox, SandboxGone, Zygote, describe_exit

ROOT = Path(__file__).resolve().parents[1]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="uid switch and namespaces need root")


@pytest.fixture(scope="module")
def uid_base() -> Iterator[int]:
    base, lock = reserve_uid_block()
    yield base
    os.close(lock)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    os.environ["MLMCOURSE_TEST_SECRET"] = "do-not-leak"
    zygote = Zygote()
    yield zygote
    zygote.close()


@pytest.fixture()
def course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "gradebook.db").write_text("SECRET-GRADES")
    (course / "source" / "hidden.txt").write_text("SECRET-TESTS")
    return course


UID_BASE: list[int] = []


@pytest.fixture(autouse=True)
def _reserved(uid_base: int) -> None:
    UID_BASE[:] = [uid_base]


def _policy(course: Path, **limits: int) -> Policy:
    keep = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix}] + [ROOT / "mlmcourse"]
    hidden, revealed = hidden_paths([course, Path("/root"), Path("/home")], keep)
    return Policy(slot=3, uid_base=UID_BASE[0], hidden_paths=tuple(hidden),
                  revealed_paths=tuple(revealed),
                  limits=Limits(**limits))


def _spawn(zygote: Zygote, course: Path, tmp_path: Path, **limits: int) -> Sandbox:
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    (workdir / "mine.txt").write_text("student file")
    return zygote.spawn(_policy(course, **limits), str(workdir), time.monotonic() + 30)


def _eval(sandbox: Sandbox, code: str, name: str = "result", seconds: float = 30) -> object:
    reply = sandbox.exchange(["run", code], time.monotonic() + seconds)
    assert reply == ["ok"], reply
    return sandbox.exchange(["get", name], time.monotonic() + seconds)[1]


READ = '''def attempt(path):
    try:
        return open(path).read()
    except OSError as exc:
        return type(exc).__name__
result = [attempt(p) for p in {paths!r}]'''


@needs_root
def test_course_files_are_hidden_but_the_package_and_own_files_are_readable(
        zygote: Zygote, course: Path, tmp_path: Path) -> None:
    sandbox = _spawn(zygote, course, tmp_path)
    try:
        paths = [str(course / "gradebook.db"), str(course / "source" / "hidden.txt"), "mine.txt",
                 str(ROOT / "mlmcourse" / "grading" / "misconceptions.py")]
        got = _eval(sandbox, READ.format(paths=paths))
        assert "SECRET" not in got[0] and got[1] == "FileNotFoundError"
        assert got[2] == "student file"
        assert "class Misconception" in got[3]
        assert _eval(sandbox, "import bdb, mlmcourse.grading.misconceptions\nresult = 1") == 1
    finally:
        sandbox.close()


@needs_root
def test_writes_outside_the_workdir_do_not_reach_the_host(
        zygote: Zygote, course: Path, tmp_path: Path) -> None:
    targets = [str(tmp_path / "outside.txt"), str(course / "gradebook.db"),
               str(ROOT / "sandbox-was-here.txt"), "/tmp/mlmcourse-sandbox-was-here"]
    code = ("import os\nresult = []\nfor t in " + repr(targets) + ":\n    try:\n"
            "        open(t, 'w').write('x'); result.append('wrote')\n"
            "    except OSError as exc:\n        result.append(type(exc).__name__)\n"
            "open('own.txt', 'w').write('ok')\nresult.append(open('own.txt').read())")
    sandbox = _spawn(zygote, course, tmp_path)
    try:
        got = _eval(sandbox, code)
    finally:
        sandbox.close()
    assert got[-1] == "ok"
    assert got[1] != "wrote" and got[2] != "wrote"
    assert not (tmp_path / "outside.txt").exists()
    assert (course / "gradebook.db").read_text() == "SECRET-GRADES"
    assert not (ROOT / "sandbox-was-here.txt").exists()
    assert not Path("/tmp/mlmcourse-sandbox-was-here").exists()


@needs_root
def test_environment_is_scrubbed_uid_dropped_and_network_gone(
        zygote: Zygote, course: Path, tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = f'''import os, socket
def connect():
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
result = [sorted(os.environ), os.environ["HOME"], os.getcwd(), os.getuid(), os.getgroups(),
          connect()]'''
    sandbox = _spawn(zygote, course, tmp_path)
    try:
        env, home, cwd, uid, groups, connected = _eval(sandbox, code)
    finally:
        sandbox.close()
        server.close()
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "MPLCONFIGDIR", "IPYTHONDIR", *SAFE_ENV}
    assert home == cwd
    assert uid == UID_BASE[0] + 3 and groups == []
    assert connected != "connected"


def test_memory_limit_raises_memory_error(zygote: Zygote, course: Path, tmp_path: Path) -> None:
    sandbox = _spawn(zygote, course, tmp_path, memory_bytes=256 * 1024**2)
    try:
        reply = sandbox.exchange(["run", "x = bytearray(1024**3)"], time.monotonic() + 30)
    finally:
        sandbox.close()
    assert reply[:2] == ["error", "MemoryError"], (reply, sandbox.take_output())


def test_output_limit_and_wall_clock_timeout_end_the_child(
        zygote: Zygote, course: Path, tmp_path: Path) -> None:
    sandbox = _spawn(zygote, course, tmp_path, output_bytes=100_000)
    with pytest.raises(SandboxGone, match="output limit"):
        sandbox.exchange(["run", "while True: print('x' * 1000)"], time.monotonic() + 30)
    sandbox.close()
    other = tmp_path / "again"
    other.mkdir()
    sandbox = _spawn(zygote, course, other)
    started = time.monotonic()
    with pytest.raises(SandboxGone, match="timeout"):
        sandbox.exchange(["run", "while True: pass"], time.monotonic() + 1)
    assert time.monotonic() - started < 5
    sandbox.close()


def test_cpu_limit_kills_with_sigxcpu(zygote: Zygote, course: Path, tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=1)
    sandbox = _spawn(zygote, course, tmp_path, cpu_seconds=1)
    with pytest.raises(SandboxGone, match="exited"):
        sandbox.exchange(["run", "while True: pass"], time.monotonic() + 30)
    assert "CPU time limit 1 s" in describe_exit(sandbox.ended(), limits)
    sandbox.close()


@needs_root
def test_fork_bomb_is_bounded_and_reaped(zygote: Zygote, course: Path, tmp_path: Path) -> None:
    code = ('import os, time\nresult = 0\nfor _ in range(500):\n    try:\n'
            '        if os.fork() == 0:\n            time.sleep(600)\n            os._exit(0)\n'
            '        result += 1\n    except OSError:\n        break')
    sandbox = _spawn(zygote, course, tmp_path, processes=20)
    try:
        assert _eval(sandbox, code) < 20
    finally:
        sandbox.close()
    left = [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == UID_BASE[0] + 3]
    assert left == []


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
