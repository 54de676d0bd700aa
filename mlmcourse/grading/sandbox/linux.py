"""The Linux system calls and constants the sandbox uses, through ctypes; each raises
``OSError`` (with the step's name) when the kernel refuses."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
KEYCTL_JOIN_SESSION_KEYRING = 1
MADV_COLLAPSE = 25
HUGE_PAGE = 1 << 21

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _c(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_libc.mount(_c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(data)),
           f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_c(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(155 if os.uname().machine == "x86_64" else 41, _c(new_root),
                         _c(put_old)), "pivot_root")


def join_new_session_keyring() -> None:
    """Leave the inherited session keyring for a new, empty, anonymous one."""
    keyctl = 250 if os.uname().machine == "x86_64" else 219
    serial = _libc.syscall(keyctl, KEYCTL_JOIN_SESSION_KEYRING, None)
    _check(0 if serial > 0 else -1, "keyctl join session keyring")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def madvise(start: int, length: int, advice: int) -> None:
    _check(_libc.madvise(start, length, advice), f"madvise {advice}")


def write_control(path: str, value: str) -> None:
    """Write a kernel control file (cgroup, ``/proc``), which must exist: where it is missing
    (e.g. a folder that is not a cgroup) this fails rather than creating a plain file that
    controls nothing."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def bind_readonly(source: str, target: str) -> None:
    """Bind ``source`` (and what is mounted below it) at ``target``, read-only, no setuid."""
    mount(source, target, None, MS_BIND | MS_REC)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def tmpfs(target: str, size: int | str, mode: str = "755", flags: int = 0) -> None:
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | flags, f"size={size},mode={mode}")
