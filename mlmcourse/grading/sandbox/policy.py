"""What a student's code can see and do while it is graded: the whole policy, as data.

A :class:`Policy` is one value: the mounts of the sandbox's file system as a table, its devices,
its environment, its namespaces, its limits and its job slot's cgroups. It is built once per run
by :func:`build_policy` (the one place where host paths and sizes are decided), sent once to each
grading worker (:meth:`Policy.to_plain` / :meth:`Policy.from_plain` own its wire form), and
:mod:`~mlmcourse.grading.sandbox.isolation` applies it by iterating it whole: no path, size or
limit of the sandbox is written anywhere else. ``mlmcourse grade --show-policy`` prints the
effective policy of a host (:meth:`Policy.describe`).

Everything is an allowlist; what the policy does not name, a sandbox does not get. A rule that
cannot be enforced stops that submission (``failed``, with the reason): the sandbox fails
closed. The only way to grade without it is ``mlmcourse grade --no-sandbox``, for trusted code.

**Files** (:attr:`Policy.mounts`, applied in order). A fresh root, read-only once assembled:

- the system's programs and libraries (:data:`SYSTEM_PATHS`), a few files of ``/etc``
  (:data:`ETC_FILES`), the Python installation that runs the grader and the ``mlmcourse``
  package, each bound read-only; symbolic links (merged-/usr systems) are copied as links;
- the exercise sources a wheel ships (:data:`HIDDEN_PACKAGE_PATHS`: solutions and hidden tests)
  covered by an empty read-only folder;
- ``/etc/passwd``, ``/etc/group`` and ``/etc/hostname`` naming only the sandbox's own user;
- ``/dev`` with :data:`DEVICES` only, and a private ``/dev/shm``;
- a fresh ``/proc`` of its own PID namespace (it sees its own processes only);
- a private, size-limited ``/tmp`` holding ``/tmp/work``: a copy of the student's own files and
  the assignment's released data files, its working directory and ``HOME``. Nothing written
  there survives the sandbox.

Not the course folder, its ``.git``, the gradebook, the source notebooks, other submissions,
earlier results, home folders, other checkouts, or anything else of the host.

**Processes.** New PID, mount, network (loopback only, down), IPC and UTS namespaces
(:attr:`Policy.namespaces`); its own unprivileged uid and gid from a range no host account or
service can hold (checked when a run starts; one per job slot); no supplementary groups; no new
privileges; a fresh, empty session keyring (kernel keyrings are not namespaced, and a change of
uid keeps the grader's); never a core dump (see :attr:`Limits.core_bytes`); killed when the
grader goes away.

**System calls.** A seccomp filter (:attr:`Policy.syscalls`, built from
:data:`REFUSED_SYSCALLS`, loaded last, before any student code) refuses the kernel interfaces a
grading sandbox never needs and that unprivileged code uses to attack the kernel or to escape:
new namespaces, mounts, tracing other processes, BPF, perf events, ``userfaultfd``,
``io_uring``, the key ring, modules, ``kexec``, reboot, swap, accounting, quotas, the kernel
log, ``chroot``, file handles and personalities other than Linux's own. The filter's default is
to *allow*, with this table of refusals, plus two rules that keep it closed where the table
cannot see: a system call of any other ABI than the native one (32-bit ``int 0x80``, x32) kills
the process, and a system call number newer than the filter library's table (below
:data:`SYSCALL_NUMBERS`) fails with ``ENOSYS``, so a kernel interface added after this table was
written is refused, not open.

Why not an allowlist of system calls: CPython, glibc, NumPy, PyTorch (OpenMP threads, its
allocators) and IPython together use a set of calls that changes with each of their versions
and with the kernel (``clone3``, ``rseq``, ``statx``, ``faccessat2``, ``futex_waitv``...); an
allowlist that misses one breaks honest students' code in ways that look like their own bugs,
silently, on the next upgrade. The isolation above is the allowlist (what exists in the
sandbox); the filter removes the kernel's attack surface, which is the set below and is stable.

**Resources** (:class:`Limits`). Its job slot's cgroup (v1 or v2, :attr:`Policy.cgroups`: see
:mod:`~mlmcourse.grading.sandbox.cgroups`), which holds no other sandbox while it runs (only the
slot's idle zygote): at most :attr:`Limits.cpus` CPUs, :attr:`Limits.memory_bytes` of memory
for all its processes together (swap included, where the kernel accounts for it),
:attr:`Limits.processes` processes and threads. Per process: address space, CPU time, file size
and open files (``setrlimit``). Per submission: a wall-clock timeout for the whole notebook
(every process of the submission, decoding its replies included), :attr:`Limits.output_bytes` of
output, replies of at most :attr:`Limits.reply_bytes` bytes and :attr:`Limits.reply_items`
values.

**Environment.** Exactly :attr:`Policy.environment`; grading workers themselves start from
:func:`worker_environment`, so no secret of the instructor's environment is ever in a sandbox's
memory.

**What crosses back.** Only plain data (:mod:`~mlmcourse.grading.sandbox.protocol`): numbers,
strings, lists, dicts, arrays, tensors; never a pickled or live object.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import sysconfig
from dataclasses import dataclass
from errno import ENOSYS, EPERM, errorcode
from pathlib import Path
from typing import Any

from mlmcourse.grading.sandbox.cgroups import Plan

MB = 1024 * 1024

SYSTEM_PATHS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin")
"""Folders of programs and shared libraries, bound read-only where present."""
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
             "/etc/fonts", "/etc/matplotlibrc")
"""Configuration the dynamic linker, fonts and time zone need; bound read-only where present."""
HIDDEN_PACKAGE_PATHS = ("course_template/source",)
"""Folders of the ``mlmcourse`` package that a sandbox must not read (relative to the package):
the exercise sources a wheel ships, with their solutions and hidden tests."""
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
DEVICE_LINKS = (("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2"))
NAMESPACES = ("pid", "mount", "network", "ipc", "uts")
"""The namespaces every sandbox gets a new one of."""
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

# -- Limits and the policy --------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission (bytes, seconds, CPUs, counts)."""

    memory_bytes: int = 1536 * MB
    """All processes of the sandbox together (the slot's cgroup); also each process's address
    space beyond what it has mapped when it starts."""
    cpu_seconds: int = 130
    cpus: float = 1.0
    processes: int = 64
    file_bytes: int = 64 * MB
    open_files: int = 256
    core_bytes: int = 1
    """``RLIMIT_CORE`` of every sandbox process, soft and hard (a process cannot raise it, and it
    survives ``exec``). Not 0: the kernel ignores the core limit when ``core_pattern`` pipes
    dumps to a helper (systemd-coredump, apport), except for the value 1, which it reads as "no
    dump" (``fs/coredump.c``); a dump to a file needs at least a page, so 1 stops those too. The
    sandbox is also marked not dumpable (``PR_SET_DUMPABLE`` 0), which ``exec`` undoes, the
    limit not."""
    tmp_bytes: int = 512 * MB
    shm_bytes: int = 64 * MB
    root_bytes: int = 8 * MB
    """The tmpfs the root is assembled on (mount points and the few files of ``/etc``)."""
    dev_bytes: int = 64 * 1024
    output_bytes: int = 1 * MB
    output_kept_bytes: int = 64 * 1024
    """Output kept per cell for the autograded notebook (the rest is counted, not kept)."""
    reply_bytes: int = 64 * MB
    reply_items: int = 1 << 20


@dataclass(frozen=True)
class Mount:
    """One entry of the sandbox's file system. ``kind`` is one of

    - ``tmpfs``: a new tmpfs of ``size`` bytes and ``mode`` at ``target``;
    - ``bind``: the host's ``source`` at ``target``, read-only, no setuid, no devices;
    - ``link``: a symbolic link at ``target`` pointing to ``source``;
    - ``hide``: an empty read-only folder over ``target`` (a part of a bound folder);
    - ``file``: a read-only file at ``target`` holding ``content``;
    - ``device``: the host's device ``source`` at ``target``, no setuid, no execution;
    - ``proc``: a ``/proc`` of the sandbox's PID namespace;
    - ``work``: the student's staged files copied to ``target``, owned by the sandbox's uid.
    """

    kind: str
    target: str
    source: str = ""
    size: int = 0
    mode: int = 0o755
    content: str = ""


KINDS = ("tmpfs", "bind", "link", "hide", "file", "device", "proc", "work")


@dataclass(frozen=True)
class Policy:
    """Everything one sandbox needs to isolate itself: plain data, built by
    :func:`build_policy`, specialised per job slot by :meth:`for_slot`."""

    uid: int
    mounts: tuple[Mount, ...]
    environment: tuple[tuple[str, str], ...]
    namespaces: tuple[str, ...]
    cgroups: Plan
    """The run's cgroups (version and folders); each job slot's zygote makes its own below."""
    syscalls: tuple[RefusedCalls, ...]
    """What the system-call filter refuses (every other call of the native ABI is allowed)."""
    limits: Limits
    hostname: str = HOSTNAME
    workdir: str = WORKDIR

    def for_slot(self, slot: int) -> Policy:
        """The policy of job slot ``slot``: its own uid (two sandboxes running at once never
        share a uid, nor its process limit), and the files of ``/etc`` naming it."""
        uid = self.uid + slot
        mounts = tuple(_identity_files(uid, self.hostname, self.workdir).get(m.target, m)
                       if m.kind == "file" else m for m in self.mounts)
        return dataclasses.replace(self, uid=uid, mounts=mounts)

    def to_plain(self) -> dict[str, Any]:
        """The wire form (JSON-ready); :meth:`from_plain` is its inverse."""
        return dataclasses.asdict(self)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Policy:
        """The policy from :meth:`to_plain`'s form; any other shape is refused."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(plain, dict) or set(plain) != fields:
            raise ValueError("not a sandbox policy")
        mounts = tuple(Mount(**m) for m in plain["mounts"])
        if any(m.kind not in KINDS for m in mounts):
            raise ValueError("a mount of an unknown kind")
        return cls(uid=int(plain["uid"]), mounts=mounts,
                   environment=tuple((str(k), str(v)) for k, v in plain["environment"]),
                   namespaces=tuple(plain["namespaces"]),
                   cgroups=Plan(version=int(plain["cgroups"]["version"]),
                                run=tuple(plain["cgroups"]["run"])),
                   syscalls=tuple(RefusedCalls(**{**rule, "syscalls": tuple(rule["syscalls"]),
                                                  "unless_one_of": tuple(rule["unless_one_of"])})
                                  for rule in plain["syscalls"]),
                   limits=Limits(**plain["limits"]), hostname=plain["hostname"],
                   workdir=plain["workdir"])

    def describe(self) -> str:
        """The policy as a reader checks it against this module: one line per rule."""
        lines = [f"uid and gid      {self.uid} (job slot n uses {self.uid} + n)",
                 f"hostname         {self.hostname}",
                 f"working folder   {self.workdir} (also HOME)",
                 f"namespaces       {', '.join(self.namespaces)}",
                 f"cgroups          v{self.cgroups.version}: {'; '.join(self.cgroups.run)} "
                 "(a folder per job slot below)", "", "mounts:"]
        for m in self.mounts:
            detail = {"tmpfs": f"tmpfs {_size(m.size)}, mode {m.mode:o}",
                      "bind": f"read-only from {m.source}", "link": f"link to {m.source}",
                      "hide": "hidden (empty, read-only)", "file": "file (read-only)",
                      "device": f"device {m.source}", "proc": "proc of its PID namespace",
                      "work": "the student's files, owned by the sandbox's uid"}[m.kind]
            lines.append(f"  {m.target:<40} {detail}")
        lines += ["", "system calls refused (errno; a call of another ABI kills the process):"]
        for rule in self.syscalls:
            condition = (f" when argument {rule.argument} has a bit of {rule.any_bits:#x}"
                         if rule.any_bits else
                         f" unless argument {rule.argument} is one of "
                         f"{', '.join(f'{v:#x}' for v in rule.unless_one_of)}"
                         if rule.unless_one_of else "")
            lines.append(f"  {rule.family + ':':<28} {', '.join(rule.syscalls)} "
                         f"({errorcode.get(rule.errno, rule.errno)}){condition}")
        lines.append(f"  {'newer calls:':<28} numbers the filter library does not name, below "
                     f"{SYSCALL_NUMBERS} (ENOSYS)")
        lines += ["", "environment:"] + [f"  {k}={v}" for k, v in self.environment]
        lines += ["", "limits:"] + [f"  {f.name:<18} {getattr(self.limits, f.name)}"
                                     for f in dataclasses.fields(self.limits)]
        return "\n".join(lines)


def _size(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // 1024} kB"


def python_paths() -> list[str]:
    """The Python installation that runs the grader (standard library, site-packages of the
    environment and of its base interpreter) and the folder holding the ``mlmcourse`` package."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"),
             sysconfig.get_path("platlib"), package_folder()}
    return sorted(str(Path(p).resolve()) for p in paths if p)


def package_folder() -> str:
    """The folder of the ``mlmcourse`` package."""
    import mlmcourse

    return str(Path(mlmcourse.__file__).resolve().parent)


def build_policy(uid: int, cgroups: Plan, limits: Limits) -> Policy:
    """The policy of this run's sandboxes on this host: uids from ``uid`` (one per job slot),
    below the run's ``cgroups``, with ``limits``."""
    host = [p for p in (*SYSTEM_PATHS, *ETC_FILES) if os.path.lexists(p)]
    mounts = [Mount("tmpfs", "/", size=limits.root_bytes),
              # the private /tmp first: a Python installation or checkout under the host's
              # /tmp is then bound read-only inside it, not hidden by it
              Mount("tmpfs", "/tmp", size=limits.tmp_bytes, mode=0o1777),
              Mount("work", WORKDIR, mode=0o700)]
    for path in _outermost(host + python_paths()):
        if os.path.islink(path):
            mounts.append(Mount("link", path, os.readlink(path)))
        else:
            mounts.append(Mount("bind", path, path))
    package = package_folder()
    mounts += [Mount("hide", os.path.join(package, hidden)) for hidden in HIDDEN_PACKAGE_PATHS
               if os.path.isdir(os.path.join(package, hidden))]
    mounts += list(_identity_files(uid, HOSTNAME, WORKDIR).values())
    mounts.append(Mount("tmpfs", "/dev", size=limits.dev_bytes))
    mounts += [Mount("device", device, device) for device in DEVICES]
    mounts += [Mount("link", link, target) for link, target in DEVICE_LINKS]
    mounts.append(Mount("tmpfs", "/dev/shm", size=limits.shm_bytes, mode=0o1777))
    mounts.append(Mount("proc", "/proc"))
    environment = {"PATH": sandbox_path_env(), "HOME": WORKDIR, "TMPDIR": "/tmp",
                   "MPLCONFIGDIR": WORKDIR, "IPYTHONDIR": f"{WORKDIR}/.ipython",
                   "USER": "student", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    return Policy(uid=uid, mounts=tuple(mounts), environment=tuple(environment.items()),
                  namespaces=NAMESPACES, cgroups=cgroups, syscalls=REFUSED_SYSCALLS,
                  limits=limits)


def _identity_files(uid: int, hostname: str, workdir: str) -> dict[str, Mount]:
    """``/etc/passwd``, ``/etc/group`` and ``/etc/hostname`` naming only the sandbox's user."""
    return {m.target: m for m in (
        Mount("file", "/etc/passwd",
              content=f"student:x:{uid}:{uid}:student:{workdir}:/usr/sbin/nologin\n"),
        Mount("file", "/etc/group", content=f"student:x:{uid}:\n"),
        Mount("file", "/etc/hostname", content=hostname + "\n"))}


def _outermost(paths: list[str]) -> list[str]:
    """The paths, without those inside another one of them (a bind covers its subfolders)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


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
