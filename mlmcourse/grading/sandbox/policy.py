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
starts); no supplementary groups; no new privileges; killed when the grader goes away.

**Resources.** Its job slot's cgroup (v1 or v2: :mod:`~mlmcourse.grading.sandbox.cgroups`),
which holds no other sandbox while it runs (only the slot's idle zygote): at most
:attr:`Limits.cpus` CPUs, :attr:`Limits.memory_bytes` of memory for all its processes
together (swap included, where the kernel accounts for it), :attr:`Limits.processes` processes
and threads. Per process: address space, CPU time, file size and open files (``setrlimit``).
Per submission: a wall-clock timeout for the whole notebook (every process of the submission,
decoding its replies included), :attr:`Limits.output_bytes` of output, replies of at most
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
from pathlib import Path

from mlmcourse.grading.sandbox.cgroups import Plan

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
    cgroups: Plan
    limits: Limits = field(default_factory=Limits)


def python_paths() -> list[str]:
    """The Python installation that runs the grader (standard library, site-packages of the
    environment and of its base interpreter) and the folder holding the ``mlmcourse`` package."""
    import mlmcourse

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"),
             sysconfig.get_path("platlib"), str(Path(mlmcourse.__file__).resolve().parent)}
    return sorted(str(Path(p).resolve()) for p in paths if p)


def build_policy(uid: int, cgroups: Plan, limits: Limits) -> Policy:
    """The policy of one sandbox: its uid, its run's cgroups and the host paths it may read."""
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
