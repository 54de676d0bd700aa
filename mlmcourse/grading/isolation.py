"""What a sandbox child does to itself right after ``fork``, before any student code runs.

In order: a new session; private mount, network and IPC namespaces (root), or an unprivileged
user namespace as fallback; the course's private files, the submissions and home folders hidden
under empty tmpfs mounts; ``chdir`` into the student's working copy; a per-slot unprivileged
uid/gid; a scrubbed environment; ``setrlimit`` limits; no new privileges; killed if its parent dies.
Every step that the system refuses is skipped and reported as a warning string.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import signal
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
FIRST_SANDBOX_UID = 61000
SAFE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission (bytes and seconds)."""

    memory_bytes: int = 1536 * 1024 * 1024
    cpu_seconds: int = 120
    file_bytes: int = 64 * 1024 * 1024
    open_files: int = 256
    processes: int = 64
    output_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class Policy:
    """Everything a child needs to isolate itself; plain data, so it crosses the zygote socket."""

    enabled: bool = True
    slot: int = 0
    uid_base: int = FIRST_SANDBOX_UID
    hidden_paths: tuple[str, ...] = ()
    revealed_paths: tuple[str, ...] = ()
    path_env: str = "/usr/bin:/bin"
    limits: Limits = field(default_factory=Limits)

    @property
    def uid(self) -> int:
        return self.uid_base + self.slot


UID_BLOCK = 64
UID_BLOCKS = 256
_libc = ctypes.CDLL(None, use_errno=True)


def reserve_uid_block(lock_dir: Path = Path("/tmp/mlmcourse-grade-uids")) -> tuple[int, int]:
    """Reserve a block of sandbox uids for this run: (first uid, lock fd to keep open).

    Sandboxes of concurrent grading runs must never share a uid: the reaper of one kills every
    process of its uid. The block stays reserved while the returned fd is open (even a killed
    run releases it).
    """
    lock_dir.mkdir(mode=0o755, exist_ok=True)
    for block in range(UID_BLOCKS):
        fd = os.open(lock_dir / f"{block}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return FIRST_SANDBOX_UID + block * UID_BLOCK, fd
    raise RuntimeError(f"all {UID_BLOCKS} blocks of sandbox uids are in use")


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                    ctypes.c_ulong(flags), data.encode() if data else None),
        f"mount {target}",
    )


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_namespaces() -> tuple[bool, list[str]]:
    """Private mount/network/IPC namespaces; returns (can_mount, warnings)."""
    if os.geteuid() == 0:
        try:
            _unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
            return True, []
        except OSError as exc:
            first = f"namespaces unavailable as root ({exc})"
    else:
        first = "not root"
    uid, gid = os.geteuid(), os.getegid()
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        return True, []
    except OSError as exc:
        return False, [f"{first}; user namespace refused too ({exc}): the submission can see "
                       "the file system and the network"]


def _hide(paths: tuple[str, ...]) -> list[str]:
    """Empty tmpfs over each hidden folder (``/dev/null`` over a file)."""
    warnings = []
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
            elif os.path.exists(path):
                _mount("/dev/null", path, None, MS_BIND, None)
        except OSError as exc:
            warnings.append(f"could not hide {path} ({exc})")
    return warnings


def _reveal(keep_fds: dict[str, int]) -> list[str]:
    """Bind the folders opened before anything was hidden (the Python installation, the
    mlmcourse package) back read-only, wherever a hiding mount or the private /tmp covered them."""
    warnings = []
    for path, fd in keep_fds.items():
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
            _mount("none", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, None)
        except OSError as exc:
            warnings.append(f"could not show {path} again ({exc})")
        finally:
            os.close(fd)
    return warnings


def _drop_privileges(policy: Policy) -> list[str]:
    if os.geteuid() != 0:
        return ["not root: the submission runs as the grader's own user"]
    os.setgroups([])
    os.setgid(policy.uid)
    os.setuid(policy.uid)
    return []


def _set_limits(policy: Policy, dropped_uid: bool) -> None:
    limits = policy.limits
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    pairs = {
        resource.RLIMIT_AS: vm_kb * 1024 + limits.memory_bytes,
        resource.RLIMIT_CPU: limits.cpu_seconds,
        resource.RLIMIT_FSIZE: limits.file_bytes,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_CORE: 0,
    }
    if dropped_uid:  # RLIMIT_NPROC counts every process of the uid: only meaningful for our own uid
        pairs[resource.RLIMIT_NPROC] = limits.processes
    for which, value in pairs.items():
        # CPU: SIGXCPU at the soft limit (a named reason); SIGKILL at the hard one if ignored
        hard = value + 5 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))


def scrubbed_environment(workdir: str, path_env: str) -> dict[str, str]:
    """The only environment variables student code sees."""
    return {"PATH": path_env, "HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir,
            "IPYTHONDIR": os.path.join(workdir, ".ipython"), **SAFE_ENV}


SANDBOX_WORKDIR = "/tmp/work"
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
"""Each sandbox gets fresh, empty, size-limited copies of these."""
SANDBOX_TMP_SIZE = "512m"


def _private_tmp(staging: str, uid: int | None) -> str:
    """Fresh size-limited tmpfs over /tmp, /var/tmp, /dev/shm; the staging files copied to
    ``/tmp/work`` (so the student's disk use is bounded and nothing leaks between slots)."""
    for path in PRIVATE_TMP_DIRS:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={SANDBOX_TMP_SIZE},mode=1777")
    os.mkdir(SANDBOX_WORKDIR, 0o700)
    for directory, _, names in os.walk(staging):
        relative = os.path.relpath(directory, staging)
        target_dir = os.path.normpath(os.path.join(SANDBOX_WORKDIR, relative))
        os.makedirs(target_dir, exist_ok=True)
        for name in names:
            with open(os.path.join(directory, name), "rb") as src, \
                    open(os.path.join(target_dir, name), "wb") as dst:
                dst.write(src.read())
    if uid is not None:
        for directory, dirs, names in os.walk(SANDBOX_WORKDIR):
            for name in [directory, *(os.path.join(directory, n) for n in dirs + names)]:
                os.lchown(name, uid, uid)
    return SANDBOX_WORKDIR


def isolate(policy: Policy, workdir_fd: int) -> tuple[str, list[str]]:
    """Isolate the calling (freshly forked) process; returns (its working directory, warnings)."""
    os.setsid()
    staging = f"/proc/self/fd/{workdir_fd}"
    if not policy.enabled:
        os.fchdir(workdir_fd)
        return os.getcwd(), []
    warnings: list[str] = []
    can_mount, notes = _enter_namespaces()
    warnings += notes
    will_drop = os.geteuid() == 0 and os.getuid() == 0 and not notes and _is_real_root()
    workdir = None
    if can_mount:
        keep_fds = {path: os.open(path, os.O_PATH | os.O_DIRECTORY)
                    for path in policy.revealed_paths if os.path.isdir(path)}
        warnings += _hide(policy.hidden_paths)
        try:
            workdir = _private_tmp(staging, policy.uid if will_drop else None)
        except OSError as exc:
            warnings.append(f"no private /tmp ({exc}): the working copy is on the shared disk")
        # after the private /tmp, so a checkout or virtualenv under /tmp stays visible
        warnings += _reveal(keep_fds)
    if workdir is None:
        os.fchdir(workdir_fd)
        workdir = os.getcwd()
        if will_drop:
            for directory, dirs, names in os.walk(workdir):
                for name in [directory, *(os.path.join(directory, n) for n in dirs + names)]:
                    os.lchown(name, policy.uid, policy.uid)
    os.chdir(workdir)
    try:
        dropped = not _drop_privileges(policy) if will_drop else False
    except OSError as exc:
        dropped = False
        warnings.append(f"could not switch to uid {policy.uid} ({exc})")
    if not dropped:
        warnings.append("running without a separate uid")
    os.environ.clear()
    os.environ.update(scrubbed_environment(workdir, policy.path_env))
    _set_limits(policy, dropped)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    return workdir, warnings


def _is_real_root() -> bool:
    """True outside a user namespace (uid 0 maps to the host's uid 0)."""
    try:
        with open("/proc/self/uid_map") as handle:
            first = handle.readline().split()
    except OSError:
        return True
    return first[:2] == ["0", "0"]
