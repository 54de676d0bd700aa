"""Applying a :class:`~mlmcourse.grading.sandbox.policy.Policy` to a freshly forked child.

The zygote forks each sandbox's *kernel* straight into a new PID namespace
(:func:`new_pid_namespace` before the fork, :func:`restore_pid_namespace` after it), so the
kernel is the first process (PID 1) of a namespace of its own: when it ends, every process
left in the namespace is killed, and killing it (timeout) kills them all. The kernel then
enters new mount, network, IPC and UTS namespaces (:func:`enter_namespaces`), builds its root
file system from the policy's mount table, joins a fresh session keyring, drops to the sandbox
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
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlmcourse.grading.sandbox import cgroups, linux, seccomp
from mlmcourse.grading.sandbox.policy import Mount, Policy, RefusedCalls

if TYPE_CHECKING:
    import pyseccomp

NEW_ROOT = "/tmp"
"""Where the new root is assembled (in the sandbox's own mount namespace) before pivot_root."""
EXIT_REFUSED = 70


class Refused(Exception):
    """A step of the isolation was refused by the system; the submission cannot be graded."""


def _step(what: str, action: Callable[..., object], *args: object) -> None:
    try:
        action(*args)
    except OSError as exc:
        raise Refused(f"{what}: {exc.strerror or exc}") from None


NAMESPACE_FLAGS = {"mount": linux.CLONE_NEWNS, "network": linux.CLONE_NEWNET,
                   "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS}
"""The namespaces the kernel enters itself (the PID namespace is the zygote's to make)."""


def cgroup_slot(policy: Policy, zygote_pid: int) -> cgroups.Slot:
    """The cgroups of the job slot whose zygote has ``zygote_pid`` (its sandboxes run there,
    one at a time)."""
    return cgroups.Slot(policy.cgroups, f"{policy.uid}-{zygote_pid}")


def syscall_filter(table: tuple[RefusedCalls, ...]) -> pyseccomp.SyscallFilter:
    """In the zygote: the filter of the policy's system-call table, built once to be loaded by
    each sandbox."""
    try:
        return seccomp.build(table)
    except seccomp.FilterError as exc:
        raise Refused(f"system call filter: {exc}") from None


def new_pid_namespace(policy: Policy) -> None:
    """In the zygote: the next process it forks is PID 1 of a new PID namespace."""
    if "pid" not in policy.namespaces:
        raise Refused("every sandbox needs a PID namespace of its own")
    _step("PID namespace", linux.unshare, linux.CLONE_NEWPID)


def restore_pid_namespace(own: int) -> None:
    """In the zygote, after the fork: its later children are born in its own namespace again
    (``own`` is a descriptor of ``/proc/self/ns/pid`` opened at its start), so that the next
    :func:`new_pid_namespace` is allowed."""
    _step("PID namespace", linux.setns, own, linux.CLONE_NEWPID)


def enter_namespaces(policy: Policy, refusal: str = "") -> None:
    """In the kernel (PID 1 of its namespace, already in its slot's cgroups unless the zygote
    reports why not in ``refusal``): its own session and the policy's other namespaces."""
    if refusal:
        raise Refused(refusal)
    unknown = set(policy.namespaces) - {"pid", *NAMESPACE_FLAGS}
    if unknown:
        raise Refused(f"unknown namespaces {sorted(unknown)}")
    os.setsid()
    # the sandbox's processes, not the zygote beside them, are the ones killed when the slot's
    # memory runs out (a student cannot lower this below the zygote's 0)
    _step("OOM score", linux.write_control, "/proc/self/oom_score_adj", "1000")
    flags = 0
    for name in policy.namespaces:
        flags |= NAMESPACE_FLAGS.get(name, 0)
    _step("namespaces", linux.unshare, flags)


def confine(policy: Policy, workdir_fd: int, syscalls: pyseccomp.SyscallFilter) -> None:
    """In the kernel (PID 1 of its namespace): build the root from the policy's mounts, leave
    the grader's keyring, drop privileges, set the environment and limits, and load the
    system-call filter ``syscalls`` last."""
    _step("parent-death signal", linux.prctl, linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    _step("private mounts", linux.mount, None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    # every host path as an O_PATH descriptor, opened before anything is mounted over the
    # host's folders (the new root is assembled on the host's /tmp, in this mount namespace)
    sources = {m.source: _open_source(m.source) for m in policy.mounts
               if m.kind in ("bind", "device")}
    for mount in policy.mounts:
        _make(mount, sources, workdir_fd, policy.uid)
    for fd in sources.values():
        os.close(fd)  # a descriptor of the host's file system must not reach student code
    os.mkdir(NEW_ROOT + "/.old")
    _step("pivot_root", linux.pivot_root, NEW_ROOT, NEW_ROOT + "/.old")
    os.chdir("/")
    _step("detach the host's root", linux.umount, "/.old", linux.MNT_DETACH)
    os.rmdir("/.old")
    _step("read-only root", linux.mount, None, "/", None, linux.MS_REMOUNT | linux.MS_BIND
          | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
    _step("hostname", linux.sethostname, policy.hostname)
    os.chdir(policy.workdir)
    # keyrings are not namespaced and a change of uid keeps the session keyring: without this,
    # the sandbox would hold the grader's session keyring (the filter then refuses every key
    # ring call, the slot uid's own user keyring included)
    _step("fresh session keyring", linux.join_new_session_keyring)
    _drop_privileges(policy.uid)
    os.environ.clear()
    os.environ.update(dict(policy.environment))
    _set_limits(policy)
    _step("no new privileges", linux.prctl, linux.PR_SET_NO_NEW_PRIVS, 1)
    # a change of uid clears the parent-death signal: set it again
    _step("parent-death signal", linux.prctl, linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    _step("not dumpable", linux.prctl, linux.PR_SET_DUMPABLE, 0)
    try:  # the last step: the filter also refuses calls the steps above make
        seccomp.load(syscalls)
    except seccomp.FilterError as exc:
        raise Refused(f"system call filter: {exc}") from None


def _open_source(path: str) -> int:
    try:
        return os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        raise Refused(f"open {path}: {exc.strerror}") from None


def _make(mount: Mount, sources: dict[str, int], workdir_fd: int, uid: int) -> None:
    """Make one entry of the policy's mount table in the root being assembled."""
    target = NEW_ROOT + mount.target.rstrip("/")
    if target != NEW_ROOT:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    if mount.kind == "tmpfs":
        os.makedirs(target, exist_ok=True)
        _step(f"tmpfs {mount.target}", linux.tmpfs, target, mount.size, f"{mount.mode:o}")
    elif mount.kind in ("bind", "device"):
        source = f"/proc/self/fd/{sources[mount.source]}"
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            open(target, "w").close()  # an empty file to bind onto, closed at once
        if mount.kind == "bind":
            _step(f"bind {mount.target}", linux.bind_readonly, source, target)
        else:
            _step(f"bind {mount.target}", linux.mount, source, target, None, linux.MS_BIND)
            _step(f"bind {mount.target}", linux.mount, None, target, None,
                  linux.MS_BIND | linux.MS_REMOUNT | linux.MS_NOSUID | linux.MS_NOEXEC)
    elif mount.kind == "link":
        os.symlink(mount.source, target)
    elif mount.kind == "hide":
        _step(f"hide {mount.target}", linux.tmpfs, target, 4096, "555", linux.MS_RDONLY)
    elif mount.kind == "file":
        with open(target, "w") as handle:
            handle.write(mount.content)
    elif mount.kind == "proc":
        os.mkdir(target)
        _step("/proc", linux.mount, "proc", target, "proc",
              linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    elif mount.kind == "work":
        shutil.copytree(f"/proc/self/fd/{workdir_fd}", target, symlinks=True)
        os.close(workdir_fd)
        os.chmod(target, mount.mode)
        for directory, dirs, names in os.walk(target):
            for name in [directory, *(os.path.join(directory, n) for n in dirs + names)]:
                os.lchown(name, uid, uid)
    else:
        raise Refused(f"a mount of unknown kind {mount.kind!r} at {mount.target}")


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
        resource.RLIMIT_CORE: limits.core_bytes,
    }
    for which, value in pairs.items():
        # CPU: SIGXCPU at the soft limit (a named reason); SIGKILL at the hard one if ignored
        hard = value + 5 if which == resource.RLIMIT_CPU else value
        try:
            resource.setrlimit(which, (value, hard))
        except (OSError, ValueError) as exc:
            raise Refused(f"setrlimit {which}: {exc}") from None


def close_other_fds(keep: set[int]) -> None:
    """Close every descriptor but ``keep``."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
