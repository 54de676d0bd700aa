"""Reserving a block of sandbox uids for one grading run, checked against the host.

The lock files live in :data:`LOCK_DIR`, a folder of ``/run`` (which only root can write to,
unlike the world-writable ``/run/lock``, where any local user could create the name first): the
folder must be a real folder owned by root with mode 0700, and it and its lock files are opened
without following links. A lock file also records the working folder of the run holding it, so
that the next run of the block can remove what a killed run left (:func:`left_behind`).
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import stat
from pathlib import Path

from mlmcourse.grading.sandbox.policy import FIRST_SANDBOX_UID, UID_BLOCK, UID_BLOCKS

LOCK_DIR = Path("/run/mlmcourse-grade-uids")


class UidsUnavailable(Exception):
    """No block of sandbox uids is free (or every free one is held by a host account)."""


def _held_on_host(first: int, last: int) -> list[str]:
    """Accounts, groups and running processes whose uid or gid falls in ``[first, last)``."""
    held = [f"user {p.pw_name}" for p in pwd.getpwall() if first <= p.pw_uid < last]
    held += [f"group {g.gr_name}" for g in grp.getgrall() if first <= g.gr_gid < last]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as handle:
                for line in handle:
                    if line.startswith(("Uid:", "Gid:")):
                        ids = [int(v) for v in line.split()[1:]]
                        if any(first <= i < last for i in ids):
                            held.append(f"process {name}")
                            break
        except (OSError, ValueError):
            continue
    return held


def _open_lock_dir() -> int:
    """The lock folder, made if missing, opened without following a link and checked: a real
    folder in a root-owned parent nobody else can write to, owned by root, mode 0700."""
    try:
        parent = os.open(LOCK_DIR.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UidsUnavailable(f"{LOCK_DIR.parent} cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(parent)
        if info.st_uid != 0 or info.st_mode & 0o022:
            raise UidsUnavailable(f"{LOCK_DIR.parent} is not a folder only root can write to")
        try:
            os.mkdir(LOCK_DIR.name, 0o700, dir_fd=parent)
        except FileExistsError:
            pass
        try:
            fd = os.open(LOCK_DIR.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                         | os.O_CLOEXEC, dir_fd=parent)
        except OSError as exc:
            raise UidsUnavailable(f"the uid lock folder {LOCK_DIR} is not a folder "
                                  f"({exc.strerror})") from None
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if info.st_uid != 0 or stat.S_IMODE(info.st_mode) != 0o700:
        os.close(fd)
        raise UidsUnavailable(f"the uid lock folder {LOCK_DIR} is not root's own (owner "
                              f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}): remove it")
    return fd


def _open_lock(folder: int, block: int) -> int:
    try:
        fd = os.open(f"{block}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=folder)
    except OSError as exc:
        raise UidsUnavailable(f"{LOCK_DIR / f'{block}.lock'} cannot be opened ({exc.strerror}): "
                              "remove it") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != 0:
        os.close(fd)
        raise UidsUnavailable(f"{LOCK_DIR / f'{block}.lock'} is not root's own file: remove it")
    return fd


def reserve_block() -> tuple[int, int]:
    """Reserve a block of :data:`UID_BLOCK` uids: (first uid, lock fd to keep open).

    Concurrent runs get different blocks (a lock file per block, released even when a run is
    killed). A block that any host account, group or running process holds is skipped.
    """
    folder = _open_lock_dir()
    refused: list[str] = []
    try:
        for block in range(UID_BLOCKS):
            first = FIRST_SANDBOX_UID + block * UID_BLOCK
            fd = _open_lock(folder, block)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held = _held_on_host(first, first + UID_BLOCK)
            if not held:
                return first, fd
            refused.append(f"{first}: {', '.join(held[:3])}")
            os.close(fd)
    finally:
        os.close(folder)
    raise UidsUnavailable("no free block of sandbox uids"
                          + (f" (held on this host: {'; '.join(refused[:3])})" if refused else ""))


def left_behind(lock: int) -> str:
    """The working folder that the last run holding this block's lock recorded ("" if none): a
    run that ended removed it, a killed one did not."""
    return os.pread(lock, 4096, 0).decode("utf-8", "replace")


def record_workroot(lock: int, workroot: str) -> None:
    """Record this run's working folder in its lock file (see :func:`left_behind`)."""
    os.ftruncate(lock, 0)
    os.pwrite(lock, workroot.encode(), 0)
