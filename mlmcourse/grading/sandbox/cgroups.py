"""Control groups (cgroup v1 ``cpu``, ``memory`` and ``pids`` hierarchies): one per job slot.

A grading run makes a folder of its own in each hierarchy, below the cgroup the grader itself
runs in. Each worker's zygote makes a child folder there and joins it once, so every sandbox it
forks starts inside (moving a process into a v1 cgroup waits for an RCU grace period: paid once
per slot, not per submission). A slot runs one sandbox at a time: before each one the zygote
writes its limits and resets the peak-memory counter; after it, the zygote reads its figures
and kills whatever is left but itself. The zygote takes no CPU and almost no memory while a
sandbox runs, and a sandbox's processes are the kernel's first choice when memory runs out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from mlmcourse.grading.sandbox import linux
from mlmcourse.grading.sandbox.policy import Limits

CONTROLLERS = ("cpu", "memory", "pids")
CFS_PERIOD_US = 100_000


class CgroupsUnavailable(Exception):
    """The cgroup hierarchies the sandbox needs are not there or not writable."""


def _mount_points() -> dict[str, str]:
    """Where each cgroup v1 controller is mounted."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, extra = left.split(), right.split()
            if len(extra) >= 3 and extra[0] == "cgroup":
                for option in extra[2].split(","):
                    if option in CONTROLLERS:
                        found.setdefault(option, fields[4])
    return found


def _own_paths() -> dict[str, str]:
    """The cgroup this process is in, per controller."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                own[controller] = path
    return own


def create_run_folders(name: str) -> tuple[str, ...]:
    """Make this run's folder in each hierarchy (below the grader's own cgroup)."""
    mounts, own = _mount_points(), _own_paths()
    missing = [c for c in CONTROLLERS if c not in mounts]
    if missing:
        raise CgroupsUnavailable(
            f"the cgroup v1 hierarchies {', '.join(missing)} are not mounted (needed to bound "
            "each submission's CPU, memory and processes)")
    folders = []
    for controller in CONTROLLERS:
        folder = Path(mounts[controller], own.get(controller, "/").lstrip("/"), name)
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise CgroupsUnavailable(f"cannot create the cgroup {folder}: {exc.strerror}") from None
        folders.append(str(folder))
    return tuple(folders)


def clear_run_folders(folders: tuple[str, ...]) -> None:
    """Kill and remove what a killed earlier run of the same uid block left in its folders
    (the block's lock guarantees that no live run uses them)."""

    for parent in folders:
        for child in sorted(Path(parent).iterdir()):
            if not child.is_dir():
                continue
            for pid in (child / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            remove((str(child),))


def _write(folder: str, name: str, value: str) -> None:
    linux.write_control(os.path.join(folder, name), value)


def prepare(folders: tuple[str, ...], limits: Limits) -> int:
    """Make the slot's cgroups if needed and set them up for the next sandbox: its limits
    (one process more than the sandbox's, for the zygote), the peak-memory counter reset.
    Returns the OOM-kill count so far (see :func:`memory_figures`)."""
    for folder in folders:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)  # never its parents: they are the run's cgroups, made at its start
    cpu, memory, pids = folders
    _write(cpu, "cpu.cfs_period_us", str(CFS_PERIOD_US))
    _write(cpu, "cpu.cfs_quota_us", str(int(limits.cpus * CFS_PERIOD_US)))
    names = ["memory.limit_in_bytes"]
    if os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")):
        # memory+swap may never be below memory alone: raise it first, lower it last
        raising = _read_int(memory, "memory.memsw.limit_in_bytes") < limits.memory_bytes
        names.insert(0 if raising else 1, "memory.memsw.limit_in_bytes")
    for name in names:
        _write(memory, name, str(limits.memory_bytes))
    _write(memory, "memory.max_usage_in_bytes", "0")
    _write(pids, "pids.max", str(limits.processes + 1))
    return _oom_kills(memory)


def join(folders: tuple[str, ...]) -> None:
    """Move the calling process into the cgroups (the zygote, once)."""
    for folder in folders:
        _write(folder, "cgroup.procs", str(os.getpid()))


def _read_int(folder: str, name: str) -> int:
    with open(os.path.join(folder, name)) as handle:
        return int(handle.read())


def _oom_kills(memory: str) -> int:
    with open(os.path.join(memory, "memory.oom_control")) as handle:
        for line in handle:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


def memory_figures(folders: tuple[str, ...], kills_before: int) -> tuple[int, int]:
    """(peak memory in bytes, processes the kernel killed for memory) since :func:`prepare`
    returned ``kills_before``."""
    memory = folders[1]
    return _read_int(memory, "memory.max_usage_in_bytes"), _oom_kills(memory) - kills_before


def remove(folders: tuple[str, ...], seconds: float = 5.0) -> None:
    """Remove cgroups once their processes are gone (waits up to ``seconds``)."""
    deadline = time.monotonic() + seconds
    for folder in folders:
        while True:
            try:
                os.rmdir(folder)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
