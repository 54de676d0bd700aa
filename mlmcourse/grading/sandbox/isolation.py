"""Applying a :class:`~mlmcourse.grading.sandbox.policy.Policy` to a freshly forked child.

The zygote forks each sandbox's *kernel* straight into a new PID namespace
(:func:`new_pid_namespace` before the fork, :func:`restore_pid_namespace` after it), so the
kernel is the first process (PID 1) of a namespace of its own: when it ends, every process
left in the namespace is killed, and killing it (timeout) kills them all. The kernel then
enters new mount, network, IPC and UTS namespaces (:func:`enter_namespaces`), builds its root
file system from the policy's allowlist, joins a fresh session keyring, drops to the sandbox
uid, sets its limits and loads the system-call filter the zygote built for it
(:func:`syscall_filter`), all in :func:`confine`; only then does it run student code.

Every step either succeeds or raises :class:`Refused`: nothing runs with less isolation than
the policy says.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import time
from typing import TYPE_CHECKING

from mlmcourse.grading.sandbox import linux, seccomp
from mlmcourse.grading.sandbox.policy import (
    CORE_LIMIT,
    DEVICES,
    HOSTNAME,
    WORKDIR,
    Policy,
    RefusedCalls,
    environment,
)

if TYPE_CHECKING:
    import pyseccomp

NEW_ROOT = "/tmp"
"""Where the new root is assembled (in the sandbox's own mount namespace) before pivot_root."""
EXIT_REFUSED = 70


class Refused(Exception):
    """A step of the isolation was refused by the system; the submission cannot be graded."""


def _step(what: str, action, *args) -> None:  # noqa: ANN001 - a small internal helper
    try:
        action(*args)
    except OSError as exc:
        raise Refused(f"{what}: {exc.strerror or exc}") from None


def cgroup_folders(policy: Policy, zygote_pid: int) -> tuple[str, ...]:
    """The cgroup folders of the job slot whose zygote has ``zygote_pid`` (its sandboxes run
    there, one at a time)."""
    return tuple(os.path.join(parent, f"{policy.uid}-{zygote_pid}") for parent in policy.cgroups)


def syscall_filter(table: tuple[RefusedCalls, ...]) -> pyseccomp.SyscallFilter:
    """In the zygote: the filter of the policy's system-call table, built once to be loaded by
    each sandbox."""
    try:
        return seccomp.build(table)
    except seccomp.FilterError as exc:
        raise Refused(f"system call filter: {exc}") from None


def new_pid_namespace() -> None:
    """In the zygote: the next process it forks is PID 1 of a new PID namespace."""
    _step("PID namespace", linux.unshare, linux.CLONE_NEWPID)


def restore_pid_namespace(own: int) -> None:
    """In the zygote, after the fork: its later children are born in its own namespace again
    (``own`` is a descriptor of ``/proc/self/ns/pid`` opened at its start), so that the next
    :func:`new_pid_namespace` is allowed."""
    _step("PID namespace", linux.setns, own, linux.CLONE_NEWPID)


def enter_namespaces(refusal: str = "") -> None:
    """In the kernel (PID 1 of its namespace, already in its slot's cgroups unless the zygote
    reports why not in ``refusal``): its own session, mount, network, IPC and UTS namespaces."""
    if refusal:
        raise Refused(refusal)
    os.setsid()
    # the sandbox's processes, not the zygote beside them, are the ones killed when the slot's
    # memory runs out (a student cannot lower this below the zygote's 0)
    _step("OOM score", linux.write_control, "/proc/self/oom_score_adj", "1000")
    _step("namespaces", linux.unshare, linux.CLONE_NEWNS | linux.CLONE_NEWNET
          | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS)


def confine(policy: Policy, workdir_fd: int, path_env: str,
            syscalls: pyseccomp.SyscallFilter) -> None:
    """In the kernel (PID 1 of its namespace): build the root, leave the grader's keyring, drop
    privileges, set limits, and load the system-call filter ``syscalls`` last."""
    _step("parent-death signal", linux.prctl, linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    _step("private mounts", linux.mount, None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    sources = _open_sources(policy.readonly_paths)
    _step("new root", linux.tmpfs, NEW_ROOT, "8m")
    # the private /tmp first: a Python installation or checkout under the host's /tmp is then
    # bound read-only inside it, not hidden by it
    _make_tmp(workdir_fd, policy)
    for path, source in sources.items():
        _place(path, source)
    _make_etc(policy.uid)
    _make_dev()
    os.mkdir(NEW_ROOT + "/proc")
    _step("/proc", linux.mount, "proc", NEW_ROOT + "/proc", "proc",
          linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    os.mkdir(NEW_ROOT + "/.old")
    _step("pivot_root", linux.pivot_root, NEW_ROOT, NEW_ROOT + "/.old")
    os.chdir("/")
    _step("detach the host's root", linux.umount, "/.old", linux.MNT_DETACH)
    os.rmdir("/.old")
    _step("read-only root", linux.mount, None, "/", None, linux.MS_REMOUNT | linux.MS_BIND
          | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
    _step("hostname", linux.sethostname, HOSTNAME)
    os.chdir(WORKDIR)
    # keyrings are not namespaced and a change of uid keeps the session keyring: without this,
    # the sandbox would hold the grader's session keyring (the filter then refuses every key
    # ring call, the slot uid's own user keyring included)
    _step("fresh session keyring", linux.join_new_session_keyring)
    _drop_privileges(policy.uid)
    os.environ.clear()
    os.environ.update(environment(path_env))
    _set_limits(policy)
    _step("no new privileges", linux.prctl, linux.PR_SET_NO_NEW_PRIVS, 1)
    # a change of uid clears the parent-death signal: set it again
    _step("parent-death signal", linux.prctl, linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    _step("not dumpable", linux.prctl, linux.PR_SET_DUMPABLE, 0)
    try:  # the last step: the filter also refuses calls the steps above make
        seccomp.load(syscalls)
    except seccomp.FilterError as exc:
        raise Refused(f"system call filter: {exc}") from None


def _open_sources(paths: tuple[str, ...]) -> dict[str, int | str]:
    """Each allowed host path as an ``O_PATH`` descriptor (or a link's target), opened before
    anything is mounted over the host's folders."""
    sources: dict[str, int | str] = {}
    for path in paths:
        if os.path.islink(path):
            sources[path] = os.readlink(path)
        elif os.path.exists(path):
            sources[path] = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    return sources


def _place(path: str, source: int | str) -> None:
    target = NEW_ROOT + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if isinstance(source, str):
        os.symlink(source, target)
        return
    if os.path.isdir(f"/proc/self/fd/{source}"):
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "w").close()  # noqa: SIM115 - an empty file to bind onto
    _step(f"bind {path}", linux.bind_readonly, f"/proc/self/fd/{source}", target)
    os.close(source)


def _make_etc(uid: int) -> None:
    os.makedirs(NEW_ROOT + "/etc", exist_ok=True)
    with open(NEW_ROOT + "/etc/passwd", "w") as handle:
        handle.write(f"student:x:{uid}:{uid}:student:{WORKDIR}:/usr/sbin/nologin\n")
    with open(NEW_ROOT + "/etc/group", "w") as handle:
        handle.write(f"student:x:{uid}:\n")
    with open(NEW_ROOT + "/etc/hostname", "w") as handle:
        handle.write(HOSTNAME + "\n")


def _make_dev() -> None:
    dev = NEW_ROOT + "/dev"
    os.mkdir(dev)
    _step("/dev", linux.tmpfs, dev, "64k")
    for device in DEVICES:
        open(NEW_ROOT + device, "w").close()  # noqa: SIM115 - an empty file to bind onto
        _step(f"bind {device}", linux.mount, device, NEW_ROOT + device, None, linux.MS_BIND)
        _step(f"bind {device}", linux.mount, None, NEW_ROOT + device, None,
              linux.MS_BIND | linux.MS_REMOUNT | linux.MS_NOSUID | linux.MS_NOEXEC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(dev + "/shm")
    _step("/dev/shm", linux.tmpfs, dev + "/shm", "64m", "1777")


def _make_tmp(workdir_fd: int, policy: Policy) -> None:
    """The private, size-limited /tmp with the student's files copied to /tmp/work."""
    tmp = NEW_ROOT + "/tmp"
    os.mkdir(tmp)
    _step("/tmp", linux.tmpfs, tmp, policy.limits.tmp_bytes, "1777")
    work = NEW_ROOT + WORKDIR
    shutil.copytree(f"/proc/self/fd/{workdir_fd}", work, symlinks=True)
    os.close(workdir_fd)
    os.chmod(work, 0o700)
    for directory, dirs, names in os.walk(work):
        for name in [directory, *(os.path.join(directory, n) for n in dirs + names)]:
            os.lchown(name, policy.uid, policy.uid)


def _drop_privileges(uid: int) -> None:
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    except OSError as exc:
        raise Refused(f"switching to uid {uid}: {exc.strerror}") from None
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
        raise Refused(f"still running as uid {os.geteuid()} after switching to {uid}")


def _set_limits(policy: Policy) -> None:
    limits = policy.limits
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    pairs = {
        resource.RLIMIT_AS: vm_kb * 1024 + limits.memory_bytes,
        resource.RLIMIT_CPU: limits.cpu_seconds,
        resource.RLIMIT_FSIZE: limits.file_bytes,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_NPROC: limits.processes,
        resource.RLIMIT_CORE: CORE_LIMIT,  # not 0: see CORE_LIMIT
    }
    for which, value in pairs.items():
        # CPU: SIGXCPU at the soft limit (a named reason); SIGKILL at the hard one if ignored
        hard = value + 5 if which == resource.RLIMIT_CPU else value
        try:
            resource.setrlimit(which, (value, hard))
        except (OSError, ValueError) as exc:
            raise Refused(f"setrlimit {which}: {exc}") from None


def kill_cgroup(folders: tuple[str, ...], keep: int, seconds: float = 5.0) -> None:
    """Kill every process still in a slot's cgroups but ``keep`` (the zygote does this after
    the kernel has ended; the end of its PID namespace has normally ended them all)."""
    deadline = time.monotonic() + seconds
    procs = os.path.join(folders[-1], "cgroup.procs")
    while time.monotonic() < deadline:
        with open(procs) as handle:
            pids = [int(p) for p in handle.read().split() if int(p) != keep]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def close_other_fds(keep: set[int]) -> None:
    """Close every descriptor but ``keep``."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
