"""What a student's code can see and do while it is graded: the whole policy, in one file.

Everything below is an allowlist; what it does not name, a sandbox does not get. Each rule is
enforced by :mod:`~mlmcourse.grading.sandbox.isolation` before any student code runs, and a rule
that cannot be enforced stops that submission (``failed``, with the reason): the sandbox fails
closed. The only way to grade without it is ``mlmcourse grade --no-sandbox``, for trusted code.

**Files.** A fresh root file system, read-only, holding only:

- the system's programs and libraries (:data:`SYSTEM_PATHS`, read-only), a few files of
  ``/etc`` (:data:`ETC_FILES`, read-only) and an ``/etc/passwd`` naming the sandbox's own user;
- the Python installation that runs the grader and the ``mlmcourse`` package (read-only);
- ``/dev/null``, ``/dev/zero``, ``/dev/random``, ``/dev/urandom`` (:data:`DEVICES`);
- a fresh ``/proc`` of its own PID namespace (it sees its own processes only);
- a private, size-limited ``/tmp`` (and ``/dev/shm``) holding ``/tmp/work``: a copy of the
  student's own files and the assignment's released data files; its working directory and
  ``HOME``. Nothing written there survives the sandbox.

Not the course folder, its ``.git``, the gradebook, the source notebooks, other submissions,
earlier results, home folders, other checkouts, or anything else of the host.

**Processes.** Its own PID, mount, network (loopback only, down), IPC and UTS namespaces; its own
unprivileged uid and gid from a range no host account or service can hold (checked when a run
starts); no supplementary groups; no new privileges; a fresh, empty session keyring (kernel
keyrings are not namespaced, and a change of uid keeps the grader's); never a core dump (see
:data:`CORE_LIMIT`); killed when the grader goes away.

**System calls.** A seccomp filter (:data:`REFUSED_SYSCALLS`, loaded last, before any student
code) refuses the kernel interfaces a grading sandbox never needs and that unprivileged code
uses to attack the kernel or to escape: new namespaces, mounts, tracing other processes, BPF,
perf events, ``userfaultfd``, ``io_uring``, the key ring, modules, ``kexec``, reboot, swap,
accounting, quotas, the kernel log, ``chroot``, file handles and personalities other than
Linux's own. The filter's default is to *allow*, with this table of refusals, plus two rules
that keep it closed where the table cannot see: a system call of any other ABI than the
native one (32-bit ``int 0x80``, x32) kills the process, and a system call number newer than
the filter library's table (below :data:`SYSCALL_NUMBERS`) fails with ``ENOSYS``, so a kernel
interface added after this table was written is refused, not open.

Why not an allowlist of system calls: CPython, glibc, NumPy, PyTorch (OpenMP threads, its
allocators) and IPython together use a set of calls that changes with each of their versions
and with the kernel (``clone3``, ``rseq``, ``statx``, ``faccessat2``, ``futex_waitv``...); an
allowlist that misses one breaks honest students' code in ways that look like their own bugs,
silently, on the next upgrade. The isolation above is the allowlist (what exists in the
sandbox); the filter removes the kernel's attack surface, which is the set below and is stable.

**Resources.** Its job slot's cgroup, which holds no other sandbox while it runs (only the
slot's idle zygote): at most :attr:`Limits.cpus` CPUs, :attr:`Limits.memory_bytes` of
memory for all its processes together, :attr:`Limits.processes` processes and threads. Per
process: address space, CPU time, file size and open files (``setrlimit``). Per submission: a
wall-clock timeout for the whole notebook (every process of the submission, decoding its
replies included), :attr:`Limits.output_bytes` of output, replies of at most
:attr:`Limits.reply_bytes` bytes and :attr:`Limits.reply_items` values.

**Environment.** Exactly :func:`environment`; grading workers themselves start from
:func:`worker_environment`, so no secret of the instructor's environment is ever in a sandbox's
memory.

**What crosses back.** Only plain data (:mod:`~mlmcourse.grading.sandbox.protocol`): numbers,
strings, lists, dicts, arrays, tensors; never a pickled or live object.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass, field
from errno import ENOSYS, EPERM
from pathlib import Path

MB = 1024 * 1024

SYSTEM_PATHS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin")
"""Folders of programs and shared libraries, bound read-only (symbolic links, as on merged-/usr
systems, are copied as links)."""
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
             "/etc/fonts", "/etc/matplotlibrc")
"""Configuration the dynamic linker, fonts and time zone need; bound read-only where present."""
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
WORKDIR = "/tmp/work"
HOSTNAME = "sandbox"

FIRST_SANDBOX_UID = 0x7000_0000
"""Sandbox uids and gids start here: above every range a Linux distribution or systemd hands
out (system and regular users, systemd's dynamic users at 61184-65519, nobody, the container
ranges up to 0x6FFFFFFF) and below 2**31. A run checks its block against the host's accounts,
groups and processes before using it."""
UID_BLOCK = 64
"""uids reserved by one grading run (one per job slot)."""
UID_BLOCKS = 256


# -- System calls ------------------------------------------------------------------------------
# The seccomp filter as data: :mod:`~mlmcourse.grading.sandbox.seccomp` installs this table
# whole; a rule it cannot install refuses the sandbox.


@dataclass(frozen=True)
class RefusedCalls:
    """A family of system calls the sandbox refuses, failing with ``errno``.

    Every call is refused, unless one of the two conditions on the call's ``argument`` (its
    first by default) is given: ``any_bits`` (refused only when the argument has one of these
    bits set) or ``unless_one_of`` (refused unless the argument is one of these values).
    """

    family: str
    syscalls: tuple[str, ...]
    errno: int = EPERM
    argument: int = 0
    any_bits: int = 0
    unless_one_of: tuple[int, ...] = ()


CLONE_NAMESPACE_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                         | 0x20000000 | 0x40000000)
"""``CLONE_NEWNS``, ``CLONE_NEWCGROUP``, ``CLONE_NEWUTS``, ``CLONE_NEWIPC``, ``CLONE_NEWUSER``,
``CLONE_NEWPID`` and ``CLONE_NEWNET``: the flags of ``clone`` that make a namespace
(``CLONE_NEWTIME`` exists for ``unshare`` and ``clone3`` only: in ``clone`` its bit belongs to
the exit signal)."""
PER_LINUX, PERSONALITY_QUERY = 0, 0xFFFF_FFFF
"""Linux's own personality, and the value that only asks for the current one."""


REFUSED_SYSCALLS: tuple[RefusedCalls, ...] = (
    RefusedCalls("namespaces", ("unshare", "setns")),
    RefusedCalls("namespaces", ("clone",), any_bits=CLONE_NAMESPACE_FLAGS),
    # clone3 passes its flags in memory, which a filter cannot read: ENOSYS, so that glibc and
    # CPython fall back to clone (whose flags the rule above reads), as Docker's profile does
    RefusedCalls("namespaces", ("clone3",), errno=ENOSYS),
    RefusedCalls("mounts", ("mount", "umount2", "pivot_root", "move_mount", "open_tree",
                            "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")),
    RefusedCalls("other processes' memory", ("ptrace", "process_vm_readv",
                                             "process_vm_writev")),
    RefusedCalls("kernel programs and events", ("bpf", "perf_event_open", "userfaultfd")),
    RefusedCalls("io_uring", ("io_uring_setup", "io_uring_enter", "io_uring_register")),
    RefusedCalls("key ring", ("keyctl", "add_key", "request_key")),
    RefusedCalls("kernel modules", ("init_module", "finit_module", "delete_module")),
    RefusedCalls("kexec and reboot", ("kexec_load", "kexec_file_load", "reboot")),
    RefusedCalls("swap", ("swapon", "swapoff")),
    RefusedCalls("accounting and quotas", ("acct", "quotactl", "quotactl_fd")),
    RefusedCalls("kernel log", ("syslog",)),
    RefusedCalls("chroot", ("chroot",)),
    RefusedCalls("file handles", ("open_by_handle_at", "name_to_handle_at")),
    RefusedCalls("personality", ("personality",), unless_one_of=(PER_LINUX, PERSONALITY_QUERY)),
)
"""What the seccomp filter refuses; every other call of the native ABI is allowed."""
SYSCALL_NUMBERS = 512
"""System call numbers above the greatest the filter library names (newer than its table) and
below this fail with ``ENOSYS`` (x86-64's and arm64's system calls are numbered below it)."""
CORE_LIMIT = 1
"""``RLIMIT_CORE`` of every sandbox process, soft and hard (a process cannot raise it, and it
survives ``exec``). Not 0: the kernel ignores the core limit when ``core_pattern`` pipes dumps
to a helper (systemd-coredump, apport), except for the value 1, which it reads as "no dump"
(``fs/coredump.c``); a dump to a file needs at least a page, so 1 stops those too. The
sandbox is also marked not dumpable (``PR_SET_DUMPABLE`` 0), which ``exec`` undoes, the
limit not."""


# -- Limits and the policy --------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission (bytes, seconds, CPUs)."""

    memory_bytes: int = 1536 * MB
    cpu_seconds: int = 130
    cpus: float = 1.0
    processes: int = 64
    file_bytes: int = 64 * MB
    open_files: int = 256
    tmp_bytes: int = 512 * MB
    output_bytes: int = 1 * MB
    reply_bytes: int = 64 * MB
    reply_items: int = 1 << 20


@dataclass(frozen=True)
class Policy:
    """Everything one sandbox needs to isolate itself; plain data, so it crosses to the zygote.

    Build it with :func:`build_policy`, the one place where the host paths are decided.
    """

    uid: int
    readonly_paths: tuple[str, ...]
    cgroups: tuple[str, ...]
    limits: Limits = field(default_factory=Limits)
    syscalls: tuple[RefusedCalls, ...] = REFUSED_SYSCALLS


def python_paths() -> list[str]:
    """The Python installation that runs the grader (standard library, site-packages of the
    environment and of its base interpreter) and the folder holding the ``mlmcourse`` package."""
    import mlmcourse

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"),
             sysconfig.get_path("platlib"), str(Path(mlmcourse.__file__).resolve().parent)}
    return sorted(str(Path(p).resolve()) for p in paths if p)


def build_policy(uid: int, cgroups: tuple[str, ...], limits: Limits) -> Policy:
    """The policy of one sandbox: its uid, its cgroup folders and the host paths it may read."""
    system = [p for p in (*SYSTEM_PATHS, *ETC_FILES) if os.path.lexists(p)]
    return Policy(uid=uid, readonly_paths=tuple(_outermost(system + python_paths())),
                  cgroups=cgroups, limits=limits)


def _outermost(paths: list[str]) -> list[str]:
    """The paths, without those inside another one of them (a bind covers its subfolders)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def environment(path_env: str) -> dict[str, str]:
    """The only environment variables student code sees."""
    return {"PATH": path_env, "HOME": WORKDIR, "TMPDIR": "/tmp", "MPLCONFIGDIR": WORKDIR,
            "IPYTHONDIR": f"{WORKDIR}/.ipython", "USER": "student", "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def sandbox_path_env() -> str:
    """``PATH`` inside the sandbox: the grader's Python scripts, then the system's."""
    return os.pathsep.join([sysconfig.get_path("scripts"), "/usr/local/bin", "/usr/bin", "/bin"])


def worker_environment(workroot: Path) -> dict[str, str]:
    """The environment grading workers start with: fixed values only, nothing inherited, so no
    variable of the instructor's (tokens, passwords) is ever in a worker's or sandbox's memory."""
    return {"PATH": sandbox_path_env(), "HOME": str(workroot), "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(workroot), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1"}
