"""The sandbox (``mlmcourse.grading.sandbox``): what a forked sandbox can see, write, reach and
use, and that it refuses to run when its policy cannot be enforced."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mlmcourse.grading.sandbox import cgroups, uids
from mlmcourse.grading.sandbox import policy as policy_module
from mlmcourse.grading.sandbox.host import Sandbox, SandboxGone, Zygote, describe_exit
from mlmcourse.grading.sandbox.isolation import cgroup_slot
from mlmcourse.grading.sandbox.messages import Get, Ok, Raised, Run, Value
from mlmcourse.grading.sandbox.policy import WORKDIR, Limits, Policy, build_policy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("needs_root")
PATIENCE = 120.0
"""Seconds a step may take before a test calls it hung: generous, because these tests also run
in an emulated VM (cgroup v2), roughly ten times slower than the host."""


@pytest.fixture(scope="module")
def policy() -> Iterator[Policy]:
    base, lock = uids.reserve_block()
    plan = cgroups.create_run(f"mlmcourse-test-{os.getpid()}")
    yield build_policy(base + 3, plan, Limits())
    cgroups.clear_run(plan)  # the slot of the zygote (killed with it)
    cgroups.remove_run(plan)
    os.close(lock)


@pytest.fixture(scope="module")
def zygote(zygote_of: ZygoteOf, policy: Policy) -> Zygote:
    """The zygote of the default policy."""
    return zygote_of(policy)


ZygoteOf = Callable[[Policy], Zygote]


def _spawn(zygote_of: ZygoteOf, policy: Policy, tmp_path: Path,
           **limits: object) -> Sandbox:
    """A sandbox of the policy, with ``limits`` changed."""
    changed = replace(policy, limits=replace(policy.limits, **limits))
    return zygote_of(changed).spawn(str(_workdir(tmp_path)), time.monotonic() + PATIENCE)


def _workdir(tmp_path: Path) -> Path:
    """A new folder of staged student files in ``tmp_path``."""
    workdir = tmp_path / f"work{len(list(tmp_path.iterdir()))}"
    workdir.mkdir(mode=0o700)
    (workdir / "mine.txt").write_text("student file")
    return workdir


def _eval(sandbox: Sandbox, code: str, name: str = "result", seconds: float = PATIENCE
          ) -> object:
    reply = sandbox.exchange(Run(code), time.monotonic() + seconds)
    assert reply == Ok(), (reply, sandbox.take_output())
    value = sandbox.exchange(Get(name), time.monotonic() + seconds)
    assert isinstance(value, Value), value
    return value.value


READ = '''import os
def attempt(path):
    try:
        return open(path).read(200)
    except OSError as exc:
        return type(exc).__name__
result = [sorted(os.listdir("/")), [attempt(p) for p in {paths!r}]]'''


def test_the_root_holds_only_the_allowlist(zygote_of: ZygoteOf, policy: Policy,
                                           tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("SECRET")
    paths = [str(ROOT / ".git" / "HEAD"), str(ROOT / "autograder" / "nbgrader_config.py"),
             str(tmp_path / "secret.txt"), "/etc/shadow", "/etc/hostname", "mine.txt",
             str(ROOT / "mlmcourse" / "checks.py")]
    sandbox = _spawn(zygote_of, policy, tmp_path)
    try:
        top, got = _eval(sandbox, READ.format(paths=paths))
    finally:
        sandbox.close()
    allowed = {m.target.strip("/").split("/")[0] for m in policy.mounts
               if m.kind in ("bind", "link")}
    assert set(top) <= allowed | {"dev", "etc", "proc", "tmp"}
    assert got[:4] == ["FileNotFoundError"] * 4
    assert got[4] == "sandbox\n" and got[5] == "student file"
    assert "misconception" in got[6]


def test_everything_is_read_only_but_the_private_tmp(zygote_of: ZygoteOf,
                                                     policy: Policy, tmp_path: Path) -> None:
    code = '''import os
result = {}
for target in ["/x", "/usr/x", "/etc/x", "/dev/x", "/proc/x", "/tmp/x", "/tmp/work/x",
               "/dev/shm/x"]:
    try:
        open(target, "w").write("x")
        result[target] = "wrote"
    except OSError as exc:
        result[target] = type(exc).__name__'''
    sandbox = _spawn(zygote_of, policy, tmp_path)
    try:
        got = _eval(sandbox, code)
    finally:
        sandbox.close()
    assert {k for k, v in got.items() if v == "wrote"} == {"/tmp/x", "/tmp/work/x", "/dev/shm/x"}


def test_environment_uid_processes_and_network(zygote_of: ZygoteOf,
                                               policy: Policy, tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    code = f'''import os, socket
def connect():
    try:
        socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
result = [dict(os.environ), os.getcwd(), os.getuid(), os.getgid(), os.getgroups(), os.getpid(),
          sorted(p for p in os.listdir("/proc") if p.isdigit()), connect()]'''
    sandbox = _spawn(zygote_of, policy, tmp_path)
    try:
        env, cwd, uid, gid, groups, pid, pids, connected = _eval(sandbox, code)
    finally:
        sandbox.close()
        server.close()
    assert env == dict(policy.environment)
    assert cwd == WORKDIR and uid == gid == policy.uid and groups == []
    assert pid == 1 and pids == ["1"]  # its own PID namespace: no other process is visible
    assert connected != "connected"


def test_every_sandbox_has_a_pid_namespace_of_its_own(zygote_of: ZygoteOf,
                                                      zygote: Zygote, policy: Policy,
                                                      tmp_path: Path) -> None:
    """The zygote forks each kernel into a new PID namespace and then returns to its own: one
    sandbox after another, each is PID 1 of a namespace of its own."""
    code = 'import os\nresult = [os.getpid(), os.readlink("/proc/self/ns/pid")]'
    seen = []
    for _ in range(3):
        sandbox = _spawn(zygote_of, policy, tmp_path)
        try:
            seen.append(_eval(sandbox, code))
        finally:
            sandbox.close()
    # PID 1 each time: a namespace has one PID 1, and no process can join a namespace whose
    # PID 1 has ended (ns numbers themselves are reused once freed, so they are not compared)
    assert [pid for pid, _ in seen] == [1, 1, 1]
    assert os.readlink("/proc/self/ns/pid") not in {namespace for _, namespace in seen}
    assert os.readlink(f"/proc/{zygote.pid}/ns/pid_for_children") == os.readlink(
        f"/proc/{zygote.pid}/ns/pid")


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage").exists()
                    or "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled")
                    .read_text(), reason="no transparent huge pages on this kernel")
def test_the_zygotes_image_is_settled_for_cheap_forks(zygote_of: ZygoteOf,
                                                      zygote: Zygote, policy: Policy,
                                                      tmp_path: Path) -> None:
    """The warm image's anonymous memory is collapsed into 2 MB pages, so that a fork copies
    few page-table entries (how much depends on the image: about 80% of a grading worker's;
    the benchmark shows what it is worth)."""
    _spawn(zygote_of, policy, tmp_path).close()  # the zygote settles before its first sandbox
    with open(f"/proc/{zygote.pid}/smaps_rollup") as rollup:
        sizes = {line.split(":")[0]: int(line.split()[1]) for line in rollup if "kB" in line}
    assert sizes["AnonHugePages"] > 0, sizes


def test_memory_limits_per_process_and_for_all_processes(zygote_of: ZygoteOf,
                                                         policy: Policy, tmp_path: Path) -> None:
    sandbox = _spawn(zygote_of, policy, tmp_path, memory_bytes=128 * 1024**2)
    try:
        reply = sandbox.exchange(Run("x = bytearray(1024**3)"), time.monotonic() + PATIENCE)
    except SandboxGone as exc:
        ended = sandbox.close(grace=5.0)  # so that the failure says how it ended
        gone = (str(exc), ended, describe_exit(ended, sandbox.limits), sandbox.take_output())
        pytest.fail(f"the sandbox ended instead of raising MemoryError: {gone}")
    finally:
        sandbox.close()
    assert isinstance(reply, Raised) and reply.type_name == "MemoryError", reply
    # several processes, each under the per-process limit, together over the cgroup's: the
    # kernel kills one (or the kernel process itself) for memory
    code = ("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
            "        block = b'x' * (100 * 1024**2)\n        time.sleep(600)\n"
            "result = os.wait()[1]")
    sandbox = _spawn(zygote_of, policy, tmp_path, memory_bytes=128 * 1024**2)
    try:
        assert _eval(sandbox, code) == signal.SIGKILL
    except SandboxGone as exc:
        assert str(exc) == "exited"
    exit = sandbox.close()
    assert exit.oom_kills > 0 and describe_exit(exit, sandbox.limits)[0] == "memory", exit
    assert "memory limit" in describe_exit(exit, sandbox.limits)[1]


def test_the_sandboxs_shell_is_the_zygotes_own(policy: Policy, tmp_path: Path) -> None:
    """A zygote forked from a process with an IPython shell (an instructor's notebook, this test
    run) gives its sandboxes a fresh shell: not that shell's namespace, no history and no
    history thread (whose exit would free the memory of the forking process's other threads'
    stacks and so loosen the per-process memory limit)."""
    from IPython.core.interactiveshell import InteractiveShell

    outer = InteractiveShell.instance()
    outer.user_ns["grader_secret"] = "GRADER-SECRET"
    zygote = Zygote(policy)
    try:
        sandbox = zygote.spawn(str(_workdir(tmp_path)), time.monotonic() + PATIENCE)
        try:
            # a cell kept in history: an inherited shell's history manager starts its thread
            assert sandbox.exchange(Run("x = 1"), time.monotonic() + PATIENCE) == Ok()
            code = ("import threading\nshell = get_ipython()\nresult = ['grader_secret' in "
                    "shell.user_ns, shell.history_manager.enabled, threading.active_count()]")
            assert _eval(sandbox, code) == [False, False, 1], sandbox.take_output()
            assert "history" not in sandbox.take_output()
        finally:
            sandbox.close()
    finally:
        zygote.close()
        del outer.user_ns["grader_secret"]


def test_peak_memory_is_each_sandboxs_own(zygote_of: ZygoteOf, zygote: Zygote, policy: Policy,
                                          tmp_path: Path) -> None:
    """The slot's peak-memory counter is reset for each sandbox; where the kernel cannot reset
    it (cgroup v2 before Linux 6.12: ``memory.peak`` is read-only) the peak is reported as 0."""
    peaks = []
    for megabytes in (300, 0):
        sandbox = _spawn(zygote_of, policy, tmp_path)
        try:
            code = f"block = b'x' * ({megabytes} * 1024**2)\nresult = len(block)"
            assert _eval(sandbox, code) == megabytes * 1024**2
        finally:
            peaks.append(sandbox.close().memory_peak)
    if policy.cgroups.version == 2 and not _resettable(
            cgroup_slot(policy, zygote.pid).control("memory.peak")):
        assert peaks == [0, 0]
    else:
        assert peaks[0] >= 300 * 1024**2 and peaks[1] < peaks[0] - 200 * 1024**2, peaks


def _resettable(control: str) -> bool:
    """Whether the kernel resets ``memory.peak`` when written (Linux 6.12+); root may open the
    file for writing on older kernels too, where the write itself fails."""
    try:
        fd = os.open(control, os.O_RDWR)
    except OSError:
        return False
    try:
        os.write(fd, b"reset")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def test_output_limit_and_timeout_end_every_process(zygote_of: ZygoteOf,
                                                    zygote: Zygote, policy: Policy,
                                                    tmp_path: Path) -> None:
    sandbox = _spawn(zygote_of, policy, tmp_path, output_bytes=100_000)
    with pytest.raises(SandboxGone, match="output limit"):
        sandbox.exchange(Run("while True: print('x' * 1000)"),
                         time.monotonic() + PATIENCE)
    sandbox.close()
    code = ("import os\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
            "        while True: pass\nwhile True: pass")
    sandbox = _spawn(zygote_of, policy, tmp_path)
    started = time.monotonic()
    with pytest.raises(SandboxGone, match="timeout"):
        sandbox.exchange(Run(code), time.monotonic() + 1)
    sandbox.close()
    assert time.monotonic() - started < 5
    procs = cgroup_slot(policy, zygote.pid).control("cgroup.procs")
    assert _gone(lambda: open(procs).read().split() != [str(zygote.pid)])
    assert _gone(lambda: [p for p in os.listdir("/proc") if p.isdigit()
                          and _uid_of(p) == policy.uid])


def test_cpu_share_is_one_cpu_and_cpu_time_is_limited(zygote_of: ZygoteOf,
                                                      zygote: Zygote, policy: Policy,
                                                      tmp_path: Path) -> None:
    sandbox = _spawn(zygote_of, policy, tmp_path)
    slot = cgroup_slot(policy, zygote.pid)
    seen: dict[str, object] = {}

    def read_later() -> None:  # once the three children run
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and len(
                open(slot.control("cgroup.procs")).read().split()) < 5:
            time.sleep(0.05)
        time.sleep(0.5)
        with open(slot.control("cpu.stat")) as handle:
            seen.update((k, int(v)) for k, v in (line.split() for line in handle))
        if policy.cgroups.version == 1:
            seen["quota"] = int(open(slot.control("cpu.cfs_quota_us")).read())
            seen["period"] = int(open(slot.control("cpu.cfs_period_us")).read())
        else:
            quota, period = open(slot.control("cpu.max")).read().split()
            seen["quota"], seen["period"] = int(quota), int(period)
        seen["procs"] = len(open(slot.control("cgroup.procs")).read().split())

    reader = threading.Thread(target=read_later)
    reader.start()
    code = ("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n"
            "        while True: pass\nresult = 1")
    try:
        assert _eval(sandbox, code) == 1
    finally:
        reader.join()
        sandbox.close()
    # every process of the sandbox is in its slot's cgroup (with the idle zygote), whose quota
    # is one CPU per period
    assert seen["quota"] == seen["period"] * policy.limits.cpus and seen["procs"] >= 5
    assert seen["nr_periods"] > 0, seen
    sandbox = _spawn(zygote_of, policy, tmp_path, cpu_seconds=1)
    with pytest.raises(SandboxGone, match="exited"):
        sandbox.exchange(Run("while True: pass"), time.monotonic() + PATIENCE)
    kind, reason = describe_exit(sandbox.close(2.0), sandbox.limits)
    assert kind == "cpu_time" and "CPU time limit 1 s" in reason


def test_fork_bomb_is_bounded_and_nothing_survives(zygote_of: ZygoteOf,
                                                   policy: Policy, tmp_path: Path) -> None:
    code = ('import os, time\nresult = 0\nfor _ in range(500):\n    try:\n'
            '        if os.fork() == 0:\n            time.sleep(600)\n            os._exit(0)\n'
            '        result += 1\n    except OSError:\n        break')
    sandbox = _spawn(zygote_of, policy, tmp_path, processes=20)
    try:
        assert _eval(sandbox, code) < 20
    finally:
        sandbox.close()
    assert _gone(lambda: [p for p in os.listdir("/proc") if p.isdigit()
                          and _uid_of(p) == policy.uid])


def test_a_policy_that_cannot_be_enforced_runs_nothing(zygote_of: ZygoteOf, policy: Policy,
                                                       tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    version = policy.cgroups.version
    names = ("cpu", "memory", "pids") if version == 1 else ("run",)
    plain = [tmp_path / name for name in names]  # folders, not cgroups
    for folder in plain:
        folder.mkdir()
    for parents in [tuple(f"/nonexistent/{name}" for name in names), tuple(map(str, plain))]:
        broken = Zygote(replace(policy, cgroups=cgroups.Plan(version, parents)))
        try:
            with pytest.raises(SandboxGone, match="could not be set up.*cgroups"):
                broken.spawn(str(workdir), time.monotonic() + PATIENCE)
        finally:
            broken.close()
        # nothing was made in their place: no folder, no file that would limit nothing
        assert not Path("/nonexistent").exists()
    assert not [p for folder in plain for p in folder.rglob("*") if p.is_file()]
    # the run's own zygote still works in its own slot
    sandbox = _spawn(zygote_of, policy, tmp_path)
    try:
        assert _eval(sandbox, "result = 6 * 7") == 42
    finally:
        sandbox.close()


def test_a_zygote_that_does_not_answer_fails_the_spawn_by_its_deadline(tmp_path: Path) -> None:
    """A zygote that never reports the new sandbox's pid (stopped here; a stuck kernel call
    would do the same) fails that spawn at its deadline and is ended, never waited on for ever:
    a late pid would put every later exchange with it out of step."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    stuck = Zygote(None)
    try:
        os.kill(stuck.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(SandboxGone, match="did not start the sandbox before the deadline"):
            stuck.spawn(str(workdir), started + 2.0)
        assert 2.0 <= time.monotonic() - started < PATIENCE
        assert not stuck.alive()
    finally:
        stuck.close()


def test_the_policy_crosses_whole_and_nothing_else(policy: Policy) -> None:
    """One owner of the wire form: what a worker receives is the policy, and any other shape
    (a missing or extra field, a mount of an unknown kind) is refused."""
    plain = json.loads(json.dumps(policy.to_plain()))
    assert Policy.from_plain(plain) == policy
    unknown = {**plain, "mounts": [*plain["mounts"], {**plain["mounts"][0], "kind": "rw-bind"}]}
    for broken in ({}, {**plain, "extra": 1}, {k: v for k, v in plain.items() if k != "limits"},
                   unknown):
        with pytest.raises(ValueError):
            Policy.from_plain(broken)


def test_every_size_and_path_of_the_sandbox_is_in_the_policy(policy: Policy) -> None:
    """Isolation reads the policy whole: the sizes of the root, /tmp, /dev and /dev/shm come
    from its limits, and each slot's /etc names the slot's own uid."""
    sizes = {m.target: m.size for m in policy.mounts if m.kind == "tmpfs"}
    limits = policy.limits
    assert sizes == {"/": limits.root_bytes, "/tmp": limits.tmp_bytes,
                     "/dev": limits.dev_bytes, "/dev/shm": limits.shm_bytes}
    slot = policy.for_slot(3)
    passwd = next(m.content for m in slot.mounts if m.target == "/etc/passwd")
    assert slot.uid == policy.uid + 3 and f":{policy.uid + 3}:" in passwd


def test_the_exercise_sources_a_package_ships_are_hidden(zygote_of: ZygoteOf, policy: Policy,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel ships the exercises' sources (solutions, hidden tests) inside the package; the
    package is bound into every sandbox, but those folders are covered. Shown on a folder a
    checkout has (``course_template``), hidden the same way."""
    package = Path(policy_module.package_folder())
    monkeypatch.setattr(policy_module, "HIDDEN_PACKAGE_PATHS", ("course_template",))
    hidden = build_policy(policy.uid, policy.cgroups, policy.limits)
    assert (package / "course_template" / "nbgrader_config.py").is_file()
    code = f'''import os
def attempt(path):
    try:
        return open(path).read(20)
    except OSError as exc:
        return type(exc).__name__
result = [os.listdir({str(package / "course_template")!r}),
          attempt({str(package / "course_template" / "nbgrader_config.py")!r}),
          attempt({str(package / "__init__.py")!r})[:3]]'''
    sandbox = _spawn(zygote_of, hidden, tmp_path)
    try:
        listing, template, init = _eval(sandbox, code)
    finally:
        sandbox.close()
    assert listing == [] and template == "FileNotFoundError" and init == '"""'


def test_sandbox_uids_are_checked_against_the_host() -> None:
    first, lock = uids.reserve_block()
    try:
        assert uids._held_on_host(first, first + 64) == []
        assert uids._held_on_host(0, 1)  # root holds uid 0
    finally:
        os.close(lock)


def _gone(still_there: Callable[[], object], seconds: float = 30.0) -> bool:
    """The zygote cleans up right after it reports a sandbox's end: wait for it."""
    deadline = time.monotonic() + seconds
    while still_there():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
