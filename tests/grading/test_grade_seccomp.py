"""The sandbox's system-call filter (``sandbox/seccomp.py``, the table in ``sandbox/policy.py``),
its fresh session keyring and its core-dump limit: each refused family fails inside a sandbox,
honest PyTorch and NumPy work is unchanged, and neither the grader's keys nor an earlier
submission's reach a sandbox."""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlmcourse.grading.cli import grade as grade_cli
from mlmcourse.grading.sandbox import cgroups, seccomp, uids
from mlmcourse.grading.sandbox.host import Sandbox, SandboxGone, Zygote
from mlmcourse.grading.sandbox.messages import Get, Ok, Run, Value
from mlmcourse.grading.sandbox.policy import (
    REFUSED_SYSCALLS,
    Limits,
    Policy,
    RefusedCalls,
    build_policy,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

MARKER_ERRNO = errno.ENOTRECOVERABLE
"""An error no refused call gives on its own: a policy whose rules all return it shows that the
filter, not the kernel's own checks, refused a call."""
KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING = -3, -4
KEYCTL_GET_KEYRING_ID, KEYCTL_REVOKE, KEYCTL_CLEAR, KEYCTL_UNLINK, KEYCTL_READ = 0, 3, 7, 9, 11

# one attempt per refused system call: (name, arguments); arguments the kernel itself would
# answer differently (EFAULT, EBADF, EINVAL, a result) where it can, and harmless either way
ATTEMPTS = {
    "namespaces": [("unshare", [0x10000000]), ("setns", [-1, 0]),
                   ("clone", [0x10000000 | 17, 0, 0, 0, 0]), ("clone3", [0, 0])],
    "mounts": [("mount", [0, 0, 0, 0, 0]), ("umount2", [0, 0]), ("pivot_root", [0, 0]),
               ("move_mount", [-1, 0, -1, 0, 0]), ("open_tree", [-1, 0, 0]),
               ("fsopen", [0, 0]), ("fsconfig", [-1, 0, 0, 0, 0]), ("fsmount", [-1, 0, 0]),
               ("fspick", [-1, 0, 0]), ("mount_setattr", [-1, 0, 0, 0, 0])],
    "other processes' memory": [("ptrace", [-1, 0, 0, 0]),
                                ("process_vm_readv", [1, 0, 0, 0, 0, 0]),
                                ("process_vm_writev", [1, 0, 0, 0, 0, 0])],
    "kernel programs and events": [("bpf", [-1, 0, 0]), ("perf_event_open", [0, 0, -1, -1, 0]),
                                   ("userfaultfd", [-1])],
    "io_uring": [("io_uring_setup", [0, 0]), ("io_uring_enter", [-1, 0, 0, 0, 0, 0]),
                 ("io_uring_register", [-1, 0, 0, 0])],
    "key ring": [("keyctl", [KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0]),
                 ("add_key", [0, 0, 0, 0, 0]), ("request_key", [0, 0, 0, 0])],
    "kernel modules": [("init_module", [0, 0, 0]), ("finit_module", [-1, 0, 0]),
                       ("delete_module", [0, 0])],
    "kexec and reboot": [("kexec_load", [0, 0, 0, 0]), ("kexec_file_load", [-1, -1, 0, 0, 0]),
                         ("reboot", [0, 0, 0, 0])],
    "swap": [("swapon", [0, 0]), ("swapoff", [0])],
    "accounting and quotas": [("acct", [0]), ("quotactl", [0, 0, 0, 0]),
                              ("quotactl_fd", [-1, 0, 0, 0])],
    "kernel log": [("syslog", [10, 0, 0])],
    "chroot": [("chroot", [0])],
    "file handles": [("open_by_handle_at", [-1, 0, 0]), ("name_to_handle_at", [-1, 0, 0, 0, 0])],
    # ADDR_NO_RANDOMIZE, PER_LINUX32, READ_IMPLIES_EXEC, and Linux's own beyond 32 bits
    "personality": [("personality", [0x0040000]), ("personality", [0x0008]),
                    ("personality", [0x0400000]), ("personality", [1 << 32])],
}
ATTEMPT = '''import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def attempt(number, args):
    ctypes.set_errno(0)
    result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    if result == 0 and number == {clone}:
        os._exit(0)  # a clone that went through: the child leaves at once
    return -ctypes.get_errno() if result == -1 else result
result = [attempt(number, args) for number, args in {calls!r}]'''


@pytest.fixture(scope="module")
def policy(needs_root: None) -> Iterator[Policy]:
    base, lock = uids.reserve_block()
    plan = cgroups.create_run(f"mlmcourse-test-seccomp-{os.getpid()}")
    yield build_policy(base + 5, plan, Limits())
    cgroups.clear_run(plan)
    cgroups.remove_run(plan)
    os.close(lock)


ZygoteOf = Callable[[Policy], Zygote]


def _spawn(zygote: Zygote, tmp_path: Path) -> Sandbox:
    workdir = tmp_path / f"work{len(list(tmp_path.iterdir()))}"
    workdir.mkdir(mode=0o700)
    return zygote.spawn(str(workdir), time.monotonic() + 30)


def _eval(zygote: Zygote, tmp_path: Path, code: str, seconds: float = 60) -> object:
    """The value of ``result`` after ``code`` runs in a fresh sandbox of ``zygote``."""
    sandbox = _spawn(zygote, tmp_path)
    try:
        reply = sandbox.exchange(Run(code), time.monotonic() + seconds)
        assert reply == Ok(), (reply, sandbox.take_output())
        value = sandbox.exchange(Get("result"), time.monotonic() + seconds)
        assert isinstance(value, Value), value
        return value.value
    finally:
        sandbox.close()


def _attempt_all(zygote: Zygote, tmp_path: Path) -> dict[str, list[int]]:
    calls = [(seccomp.syscall_number(name), args)
             for family in ATTEMPTS.values() for name, args in family]
    results = iter(_eval(zygote, tmp_path, ATTEMPT.format(
        calls=calls, clone=seccomp.syscall_number("clone"))))
    return {family: [next(results) for _ in attempts] for family, attempts in ATTEMPTS.items()}


@pytest.fixture(scope="module")
def attempts(zygote_of: ZygoteOf, policy: Policy,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[int]]]:
    """Every attempt's result under the policy's own table, and under the same table with every
    rule's error replaced by :data:`MARKER_ERRNO`."""
    # clone3 keeps its ENOSYS (which, on a kernel that has clone3, only the filter gives): with
    # any other error glibc would not fall back to clone, and no thread could start at all
    marked = tuple(rule if "clone3" in rule.syscalls else replace(rule, errno=MARKER_ERRNO)
                   for rule in policy.syscalls)
    return {"policy": _attempt_all(zygote_of(policy), tmp_path_factory.mktemp("policy")),
            "marked": _attempt_all(zygote_of(replace(policy, syscalls=marked)),
                                   tmp_path_factory.mktemp("marked"))}


def test_every_refused_family_is_attempted() -> None:
    assert {rule.family for rule in REFUSED_SYSCALLS} == set(ATTEMPTS)
    attempted = {name for family in ATTEMPTS.values() for name, _ in family}
    assert attempted == {name for rule in REFUSED_SYSCALLS for name in rule.syscalls}


@pytest.mark.parametrize("family", list(ATTEMPTS))
def test_each_refused_family_fails_inside_a_sandbox(
        family: str, attempts: dict[str, dict[str, list[int]]]) -> None:
    expected = [-errno.ENOSYS if name == "clone3" else -errno.EPERM
                for name, _ in ATTEMPTS[family]]
    assert attempts["policy"][family] == expected
    # the filter refused them: under a table whose rules give an error of their own, that error
    assert attempts["marked"][family] == [-errno.ENOSYS if name == "clone3" else -MARKER_ERRNO
                                          for name, _ in ATTEMPTS[family]]


HONEST_CALLS = '''import ctypes, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
personality = [libc.syscall({personality}, ctypes.c_long(v)) for v in (0xFFFFFFFF, 0)]
pid = os.fork()
if pid == 0:
    os._exit(7)
forked = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
seen = []
thread = threading.Thread(target=lambda: seen.append(threading.get_native_id()))
thread.start(); thread.join()
child = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True)
newer = libc.syscall({newer}, -1, 0, 0, 0, 0)
result = [personality, forked, len(seen), child.stdout.strip(), newer, ctypes.get_errno()]'''


def test_calls_honest_code_makes_still_work(zygote_of: ZygoteOf, policy: Policy,
                                            tmp_path: Path) -> None:
    """The personality query and Linux's own personality, fork, threads (glibc's ``clone3``
    falls back to ``clone``), a subprocess; a number newer than the library's table is ENOSYS
    (467 is ``open_tree_attr``, Linux 6.15, which would otherwise say EBADF)."""
    got = _eval(zygote_of(policy), tmp_path, HONEST_CALLS.format(
        personality=seccomp.syscall_number("personality"), newer=467))
    assert got == [[0, 0], 7, 1, "42", -1, errno.ENOSYS]


TRAINING = '''import threading
import numpy as np
import torch
torch.manual_seed(0)
torch.set_num_threads(2)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
losses = []
for _ in range(20):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    losses.append(loss.item())
sums = []
workers = [threading.Thread(target=lambda: sums.append(float(torch.ones(500, 500).sum())))
           for _ in range(3)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
a = np.random.default_rng(0).standard_normal((200, 200))
result = [losses[0], losses[-1], sums, float(np.linalg.det(a @ np.linalg.inv(a))),
          torch.get_num_threads()]'''


def test_pytorch_and_numpy_work_in_a_filtered_sandbox(zygote_of: ZygoteOf, policy: Policy,
                                                      tmp_path: Path) -> None:
    first, last, sums, det, threads = _eval(zygote_of(policy), tmp_path, TRAINING, seconds=120)
    assert last < first and sums == [250000.0] * 3 and det == pytest.approx(1.0)
    assert threads == 2


def test_other_abis_kill_the_process(zygote_of: ZygoteOf, policy: Policy,
                                     tmp_path: Path) -> None:
    """A 32-bit system call (``int 0x80``) and an x32 one, each from a child: killed (SIGSYS)."""
    code = '''import ctypes, mmap, os, signal
def in_child(action):
    pid = os.fork()
    if pid == 0:
        action()
        os._exit(0)
    status = os.waitpid(pid, 0)[1]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
def int80():
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20 (getpid); int 0x80
    ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
def x32():
    ctypes.CDLL(None).syscall(0x40000000 | 39)  # getpid
result = [in_child(int80), in_child(x32)]'''
    if os.uname().machine != "x86_64":
        pytest.skip("the other ABIs tried are x86-64's")
    assert _eval(zygote_of(policy), tmp_path, code) == [31, 31]  # SIGSYS


def test_a_table_that_cannot_be_installed_runs_nothing(policy: Policy, tmp_path: Path) -> None:
    for table in [(RefusedCalls("made up", ("no_such_call",)),),
                  (RefusedCalls("both", ("clone",), any_bits=1, unless_one_of=(0,)),),
                  (RefusedCalls("too wide", ("personality",), unless_one_of=(1 << 64,)),),
                  (RefusedCalls("no such argument", ("clone",), argument=6, any_bits=1),)]:
        zygote = Zygote(replace(policy, syscalls=table))
        try:
            with pytest.raises(SandboxGone, match="could not be set up.*system call filter"):
                _spawn(zygote, tmp_path)
        finally:
            zygote.close()


def _refused(refused: RefusedCalls, argument: int) -> bool:
    """Whether libseccomp's rules for ``refused`` refuse a call with ``argument``."""
    def holds(op: str, *data: int) -> bool:
        if op == "MASKED_EQ":
            return argument & data[0] == data[1]
        return argument < data[0] if op == "LT" else argument > data[0]

    rules = seccomp.argument_tests(refused)
    return not rules or any(all(holds(*test) for test in rule) for rule in rules)


WORD = st.integers(0, (1 << 64) - 1)


@given(st.lists(WORD, min_size=1, max_size=4), WORD, st.integers(0, 63))
def test_unless_one_of_refuses_every_other_value(values: list[int], other: int,
                                                 bit: int) -> None:
    refused = RefusedCalls("test", ("personality",), unless_one_of=tuple(values))
    for argument in [*values, other, *(v ^ (1 << bit) for v in values),
                     *(v + d for v in values for d in (-1, 1) if 0 <= v + d < 1 << 64)]:
        assert _refused(refused, argument) == (argument not in values), argument


@given(WORD, WORD)
def test_any_bits_refuses_exactly_the_arguments_with_one_of_them(bits: int,
                                                                 argument: int) -> None:
    refused = RefusedCalls("test", ("clone",), any_bits=bits)
    assert _refused(refused, argument) == (bits == 0 or argument & bits != 0)


def test_the_personality_rule_is_dockers() -> None:
    personality = next(rule for rule in REFUSED_SYSCALLS if rule.family == "personality")
    assert [_refused(personality, v) for v in (0, 0xFFFFFFFF, 8, 0x0040000, 1 << 32)] == [
        False, False, True, True, True]


def test_the_policy_crosses_to_the_workers_whole() -> None:
    policy = build_policy(12345, cgroups.Plan(2, ("/sys/fs/cgroup/x",)), Limits())
    assert policy.syscalls == REFUSED_SYSCALLS
    assert Policy.from_plain(policy.to_plain()) == policy


CORE = '''import ctypes, resource, subprocess, sys
def raise_core():
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (1, resource.RLIM_INFINITY))
        return "raised"
    except (OSError, ValueError) as exc:
        return type(exc).__name__
child = subprocess.run([sys.executable, "-c", "import resource; "
                        "print(*resource.getrlimit(resource.RLIMIT_CORE))"],
                       capture_output=True, text=True).stdout.split()
result = [list(resource.getrlimit(resource.RLIMIT_CORE)), raise_core(), child,
          ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)]'''


def test_no_core_dump_reaches_a_pipe_helper(zygote_of: ZygoteOf, policy: Policy,
                                            tmp_path: Path) -> None:
    """RLIMIT_CORE is 1, soft and hard, in the sandbox and after ``exec`` (the value the kernel
    reads as "no dump" for a piped ``core_pattern``), the sandbox cannot raise it, and it is not
    dumpable (PR_GET_DUMPABLE is 0)."""
    limit, raised, child, dumpable = _eval(zygote_of(policy), tmp_path, CORE)
    assert policy.limits.core_bytes == 1 and limit == [1, 1] and child == ["1", "1"]
    assert raised == "ValueError" and dumpable == 0


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _keyctl(*args: int) -> int:
    return _libc.syscall(seccomp.syscall_number("keyctl"), *map(ctypes.c_long, args))


def _in_child_as(uid: int, action: Callable[[], bool]) -> bool:
    """Whether ``action()`` holds in a forked child running as ``uid`` (which still holds the
    session keyring of this process, as a sandbox would without its fresh one)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os._exit(0 if action() else 1)
        finally:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


KEYS = '''import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(number, *args):
    result = libc.syscall(number, *[a if isinstance(a, bytes) else ctypes.c_long(a)
                                    for a in args])
    return -ctypes.get_errno() if result == -1 else result
def read(key):
    if key <= 0:
        return key
    buffer = ctypes.create_string_buffer(256)
    size = libc.syscall({keyctl}, ctypes.c_long({read}), ctypes.c_long(key), buffer,
                        ctypes.c_long(256))
    return buffer.raw[:size].decode() if size >= 0 else -ctypes.get_errno()
def search(keyring, description):  # KEYCTL_SEARCH
    return read(call({keyctl}, 10, keyring, b"user", description.encode(), 0))
call({keyctl}, 8, {user}, {session})  # KEYCTL_LINK: the uid's keyring, possessed from now on
planted = call({add_key}, b"user", b"left-by-an-earlier-student", b"LEFT-BEHIND", 11, {user})
proc_keys = open("/proc/keys").read()
result = [planted, search({session}, {grader!r}), search({user}, "left-by-an-earlier-student"),
          {grader!r} in proc_keys or "left-by-an-earlier-student" in proc_keys]
if {clear}:
    call({keyctl}, {clear_op}, {user})'''


def test_neither_the_graders_keys_nor_an_earlier_submissions_reach_a_sandbox(
        policy: Policy, tmp_path: Path) -> None:
    """A key in the grader's session keyring and a key the slot's first submission tries to
    leave in its uid's user keyring: the second submission of the slot reads neither. As a
    control, a plain child of the grader running as the slot uid reads the grader's key, and
    sandboxes without the key-ring rules leave and read the user keyring's key."""
    grader = f"mlmcourse-grader-secret-{os.getpid()}"
    add_key = seccomp.syscall_number("add_key")
    key = _libc.syscall(add_key, b"user", grader.encode(), b"GRADER-SECRET", 13,
                        ctypes.c_long(KEY_SPEC_SESSION_KEYRING))
    assert key > 0, os.strerror(ctypes.get_errno())
    keyctl = seccomp.syscall_number("keyctl")
    zygote = Zygote(policy)  # forked now: it holds the session keyring with the grader's key

    def code(clear: bool = False) -> str:
        return KEYS.format(keyctl=keyctl, add_key=add_key, read=KEYCTL_READ, grader=grader,
                           user=KEY_SPEC_USER_KEYRING, session=KEY_SPEC_SESSION_KEYRING,
                           clear=clear, clear_op=KEYCTL_CLEAR)

    try:
        first, second = (_eval(zygote, tmp_path, code()) for _ in range(2))
        assert first == second == [-errno.EPERM, -errno.EPERM, -errno.EPERM, False]
        # the control: what the fresh keyring and the key-ring rules stop
        size = 64
        buffer = ctypes.create_string_buffer(size)
        assert _in_child_as(policy.uid, lambda: _libc.syscall(
            keyctl, ctypes.c_long(KEYCTL_READ), ctypes.c_long(key), buffer,
            ctypes.c_long(size)) == len("GRADER-SECRET"))
        open_table = tuple(rule for rule in policy.syscalls if rule.family != "key ring")
        unguarded = Zygote(replace(policy, syscalls=open_table))
        try:
            first = _eval(unguarded, tmp_path, code())
            second = _eval(unguarded, tmp_path, code(clear=True))
        finally:
            unguarded.close()
        assert first[0] > 0 and second[2] == "LEFT-BEHIND", (first, second)
        assert second[1] < 0  # the fresh session keyring alone hides the grader's key
    finally:
        zygote.close()
        _keyctl(KEYCTL_REVOKE, key)
        _keyctl(KEYCTL_UNLINK, key, KEY_SPEC_SESSION_KEYRING)
        _in_child_as(policy.uid, lambda: _keyctl(KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING) == 0)



def test_a_host_without_libseccomp_is_refused_before_grading(
        policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Exit code 2 naming what is missing, not one ``failed`` submission after another."""
    def missing() -> None:
        raise seccomp.FilterError("libseccomp is not available (test)")

    monkeypatch.setattr(seccomp, "_library", missing)
    course = corpus.write_course(tmp_path / "course")
    (tmp_path / "subs" / "ana").mkdir(parents=True)
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    args = parser.parse_args(["softmax", str(tmp_path / "subs"), "--course", str(course),
                              "--out", str(tmp_path / "out")])
    assert grade_cli.run(args) == 2
    assert "system call filter cannot be built: libseccomp is not available" in (
        capsys.readouterr().err)
