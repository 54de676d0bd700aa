"""Reserving a block of sandbox uids for one grading run, checked against the host."""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
from pathlib import Path

from mlmcourse.grading.sandbox.policy import FIRST_SANDBOX_UID, UID_BLOCK, UID_BLOCKS

LOCK_DIR = Path("/run/lock/mlmcourse-grade-uids")


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


def reserve_block() -> tuple[int, int]:
    """Reserve a block of :data:`UID_BLOCK` uids: (first uid, lock fd to keep open).

    Concurrent runs get different blocks (a lock file per block, released even when a run is
    killed). A block that any host account, group or running process holds is skipped.
    """
    LOCK_DIR.parent.mkdir(parents=True, exist_ok=True)
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    refused: list[str] = []
    for block in range(UID_BLOCKS):
        first = FIRST_SANDBOX_UID + block * UID_BLOCK
        fd = os.open(LOCK_DIR / f"{block}.lock", os.O_RDWR | os.O_CREAT, 0o600)
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
    raise UidsUnavailable("no free block of sandbox uids"
                          + (f" (held on this host: {'; '.join(refused[:3])})" if refused else ""))
