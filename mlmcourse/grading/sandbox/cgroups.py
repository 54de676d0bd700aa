"""Control groups, one per job slot, on cgroup v1 or v2 behind one interface.

A grading run makes a folder of its own below the cgroup the grader itself runs in
(:func:`create_run`): on cgroup v1 one in each of the ``cpu``, ``memory`` and ``pids``
hierarchies (used wherever all three are mounted, as on hybrid hosts), else one folder of the
cgroup2 hierarchy. Its :class:`Plan` is plain data and crosses to the zygotes. Each worker's
zygote makes a :class:`Slot` there and joins it once, so every sandbox it forks starts inside
(moving a process between cgroups can wait for an RCU grace period: paid once per slot, not per
submission). A slot runs one sandbox at a time: before each one the zygote writes its limits and
resets the peak-memory counter (:meth:`Slot.prepare`); after it, the zygote reads its figures and
kills whatever is left but itself. The zygote takes no CPU and almost no memory while a sandbox
runs, and a sandbox's processes are the kernel's first choice when memory runs out.

**cgroup v2.** A cgroup that hands controllers to its children (``cgroup.subtree_control``) may
hold no process itself, the root excepted. So when the grader's own cgroup does not hand out
``cpu``, ``memory`` and ``pids`` yet, the grader first moves the processes of its cgroup into a
leaf child (:data:`LEAF`, left in place: it holds the grader until it exits), then enables the
controllers there and in the run's folder; the slots below the run's folder are leaves. The
controllers must be available to the grader's cgroup (``cgroup.controllers``): under systemd, a
delegated scope gives them, e.g. ``systemd-run --scope -p Delegate=yes mlmcourse grade ...``.

Control files are only ever written where the kernel made them (:func:`linux.write_control`):
a folder that is not a cgroup gets no plain file that would limit nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlmcourse.grading.sandbox import linux

if TYPE_CHECKING:
    from mlmcourse.grading.sandbox.policy import Limits

CONTROLLERS = ("cpu", "memory", "pids")
CFS_PERIOD_US = 100_000
LEAF = "mlmcourse-leaf"
"""cgroup v2: the child of the grader's own cgroup that its processes move into, so that its
own cgroup may hand controllers to the run's folder."""
DELEGATION = "systemd-run --scope -p Delegate=yes mlmcourse grade ..."


class CgroupsUnavailable(Exception):
    """The cgroups the sandbox needs are not there or not writable; the message names what is
    missing and how to get it."""


@dataclass(frozen=True)
class Plan:
    """Where a run's cgroups are: plain data, so it crosses to the zygotes."""

    version: int
    """1 or 2."""
    run: tuple[str, ...]
    """v1: the run's folder in the ``cpu``, ``memory`` and ``pids`` hierarchies (in this order);
    v2: the run's one folder."""


def parse_mountinfo(text: str) -> tuple[dict[str, str], tuple[str, str] | None]:
    """From ``/proc/self/mountinfo``: where each cgroup v1 controller of :data:`CONTROLLERS` is
    mounted, and the first cgroup2 mount as (mount point, its root in the hierarchy)."""
    v1: dict[str, str] = {}
    v2: tuple[str, str] | None = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or not extra:
            continue
        if extra[0] == "cgroup" and len(extra) >= 3:
            for option in extra[2].split(","):
                if option in CONTROLLERS:
                    v1.setdefault(option, fields[4])
        elif extra[0] == "cgroup2" and v2 is None:
            v2 = (fields[4], fields[3])
    return v1, v2


def parse_cgroup(text: str) -> dict[str, str]:
    """From ``/proc/self/cgroup``: the cgroup of the process per v1 controller, and its cgroup2
    path under the key ``""`` (the line ``0::/path``)."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0" and not controllers:
            own[""] = path
        for controller in filter(None, controllers.split(",")):
            own[controller] = path
    return own


def locate(mountinfo: str, cgroup: str) -> tuple[int, tuple[str, ...]]:
    """The cgroup version to use and the grader's own cgroup folder(s): v1 (one folder per
    controller of :data:`CONTROLLERS`) where all three controllers are mounted, else v2."""
    v1, v2 = parse_mountinfo(mountinfo)
    own = parse_cgroup(cgroup)
    if all(c in v1 for c in CONTROLLERS):
        return 1, tuple(str(Path(v1[c], own.get(c, "/").lstrip("/"))) for c in CONTROLLERS)
    if v2 is None or "" not in own:
        missing = ", ".join(c for c in CONTROLLERS if c not in v1)
        raise CgroupsUnavailable(
            f"neither the cgroup v1 hierarchies {missing} nor a cgroup2 file system are mounted "
            "(needed to bound each submission's CPU, memory and processes): mount cgroup2 at "
            "/sys/fs/cgroup")
    mount, root = v2
    below = os.path.relpath(own[""], root)
    if below == ".." or below.startswith("../"):
        raise CgroupsUnavailable(
            f"the grader's cgroup {own['']} is outside the cgroup2 file system mounted at {mount}"
            f" (which shows {root}): run the grader in a cgroup below it")
    return 2, (os.path.normpath(os.path.join(mount, below)),)


def create_run(name: str) -> Plan:
    """Make this run's folder(s) ``name`` below the grader's own cgroup."""
    with open("/proc/self/mountinfo") as mountinfo, open("/proc/self/cgroup") as cgroup:
        version, own = locate(mountinfo.read(), cgroup.read())
    if version == 2:
        return Plan(2, (str(create_run_v2(Path(own[0]), name)),))
    folders = []
    for parent in own:
        folder = Path(parent, name)
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise CgroupsUnavailable(f"cannot create the cgroup {folder}: {exc.strerror}") from None
        folders.append(str(folder))
    return Plan(1, tuple(folders))


def create_run_v2(own: Path, name: str) -> Path:
    """cgroup v2: make the run's folder ``name`` below ``own`` (the grader's cgroup) with the
    controllers of :data:`CONTROLLERS` enabled in both, and return it."""
    if own.name == LEAF:  # an earlier run of this process moved it there
        own = own.parent
    try:
        available = (own / "cgroup.controllers").read_text().split()
    except OSError as exc:
        raise CgroupsUnavailable(f"cannot read {own / 'cgroup.controllers'}: {exc.strerror}"
                                 ) from None
    missing = [c for c in CONTROLLERS if c not in available]
    if missing:
        raise CgroupsUnavailable(
            f"the cgroup v2 controllers {', '.join(missing)} are not available to the grader's "
            f"cgroup {own} (its cgroup.controllers: {' '.join(available) or 'none'}); they bound "
            f"each submission's CPU, memory and processes: run the grader in a delegated subtree, "
            f"e.g. `{DELEGATION}`")
    run = own / name
    try:
        _enable(own, own=True)
        run.mkdir(exist_ok=True)
        _enable(run)
    except OSError as exc:
        raise CgroupsUnavailable(
            f"cannot set up the cgroup {run}: {exc.strerror or exc}; run the grader as root in a "
            f"cgroup delegated to it, e.g. `{DELEGATION}`") from None
    return run


def _enable(folder: Path, own: bool = False) -> None:
    """Hand :data:`CONTROLLERS` to the children of ``folder``; for the grader's ``own`` cgroup
    (not the root), move its processes into :data:`LEAF` first (only where needed)."""
    control = folder / "cgroup.subtree_control"
    if own:
        enabled = control.read_text().split()
        if all(c in enabled for c in CONTROLLERS):
            return
        if (folder / "cgroup.type").exists():  # every cgroup but the root has one
            _move_to_leaf(folder)
    linux.write_control(str(control), " ".join(f"+{c}" for c in CONTROLLERS))


def _move_to_leaf(folder: Path, rounds: int = 10) -> None:
    """Move every process of ``folder`` into its child :data:`LEAF` (again while some are
    forked meanwhile)."""
    leaf = folder / LEAF
    leaf.mkdir(exist_ok=True)
    for _ in range(rounds):
        pids = (folder / "cgroup.procs").read_text().split()
        if not pids:
            return
        for pid in pids:
            try:
                linux.write_control(str(leaf / "cgroup.procs"), pid)
            except ProcessLookupError:
                pass  # it has exited
    raise OSError(errno.EBUSY, f"processes keep appearing in {folder}")


def clear_run(plan: Plan) -> None:
    """Kill and remove what a killed earlier run of the same uid block left below the run's
    folder(s) (the block's lock guarantees that no live run uses them)."""
    names = {child.name for parent in plan.run for child in Path(parent).iterdir()
             if child.is_dir()}
    for name in sorted(names):
        Slot(plan, name).remove()


def remove_run(plan: Plan, seconds: float = 5.0) -> None:
    """Remove the run's folder(s) once their slots are gone (waits up to ``seconds``)."""
    _remove(plan.run, seconds)


class Slot:
    """The cgroup(s) of one job slot, ``name`` below the run's folder(s); its zygote lives in it
    and runs one sandbox at a time there."""

    def __init__(self, plan: Plan, name: str) -> None:
        self.plan, self.name = plan, name
        self.folders = tuple(os.path.join(parent, name) for parent in plan.run)
        self._peak_fd = -1  # v2: memory.peak, opened and reset by prepare()

    def control(self, name: str) -> str:
        """The path of the control file ``name`` (v1: in the hierarchy of its controller;
        ``cgroup.*`` files in the ``pids`` one)."""
        if self.plan.version == 2:
            return os.path.join(self.folders[0], name)
        controller = name.partition(".")[0]
        index = CONTROLLERS.index(controller) if controller in CONTROLLERS else -1
        return os.path.join(self.folders[index], name)

    def _write(self, name: str, value: str) -> None:
        linux.write_control(self.control(name), value)

    def _read_int(self, name: str) -> int:
        with open(self.control(name)) as handle:
            return int(handle.read())

    def prepare(self, limits: Limits) -> int:
        """Make the slot's cgroup(s) if needed and set them up for the next sandbox: its limits
        (at most ``limits.cpus`` CPUs, no swap, one process more than the sandbox's, for the
        zygote), the peak-memory counter reset. Returns the OOM-kill count so far (the baseline
        of :meth:`figures`)."""
        for folder in self.folders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder)  # never its parents: they are the run's cgroups
        quota = str(int(limits.cpus * CFS_PERIOD_US))
        if self.plan.version == 2:
            self._write("cpu.max", f"{quota} {CFS_PERIOD_US}")
            self._write("memory.max", str(limits.memory_bytes))
            if os.path.exists(self.control("memory.swap.max")):  # with swap accounting only
                self._write("memory.swap.max", "0")
            self._write("pids.max", str(limits.processes + 1))
            self._reset_peak()
            return self._oom_kills()
        self._write("cpu.cfs_period_us", str(CFS_PERIOD_US))
        self._write("cpu.cfs_quota_us", quota)
        names = ["memory.limit_in_bytes"]
        if os.path.exists(self.control("memory.memsw.limit_in_bytes")):
            # memory+swap may never be below memory alone: raise it first, lower it last
            raising = self._read_int("memory.memsw.limit_in_bytes") < limits.memory_bytes
            names.insert(0 if raising else 1, "memory.memsw.limit_in_bytes")
        for name in names:
            self._write(name, str(limits.memory_bytes))
        self._write("memory.max_usage_in_bytes", "0")
        self._write("pids.max", str(limits.processes + 1))
        return self._oom_kills()

    def _reset_peak(self) -> None:
        """v2: reset ``memory.peak`` for reads through a descriptor kept until :meth:`figures`
        (Linux 6.12+: a write resets it per open file). Older kernels only have a read-only peak
        over the cgroup's whole life (zygote and earlier sandboxes included): no descriptor is
        kept, and the peak is reported as unavailable (0)."""
        self._close_peak()
        try:
            fd = os.open(self.control("memory.peak"), os.O_RDWR)
        except OSError:
            return  # missing (before 5.19) or read-only (before 6.12)
        try:
            os.write(fd, b"reset")
        except OSError:
            os.close(fd)
            return
        self._peak_fd = fd

    def _close_peak(self) -> None:
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1

    def _oom_kills(self) -> int:
        name = "memory.events" if self.plan.version == 2 else "memory.oom_control"
        with open(self.control(name)) as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def join(self) -> None:
        """Move the calling process into the slot's cgroup(s) (the zygote, once)."""
        for folder in self.folders:
            linux.write_control(os.path.join(folder, "cgroup.procs"), str(os.getpid()))

    def figures(self, baseline: int) -> tuple[int, int]:
        """(peak memory in bytes, processes the kernel killed for memory) since :meth:`prepare`
        returned ``baseline``. The peak is 0 where the kernel cannot reset it per sandbox
        (cgroup v2 before Linux 6.12); nothing but reports reads it."""
        if self.plan.version == 1:
            peak = self._read_int("memory.max_usage_in_bytes")
        elif self._peak_fd >= 0:
            peak = int(os.pread(self._peak_fd, 32, 0))
            self._close_peak()
        else:
            peak = 0
        return peak, self._oom_kills() - baseline

    def kill_all(self, keep: int, seconds: float = 5.0) -> None:
        """Kill every process still in the slot but ``keep`` (the zygote does this after the
        kernel has ended; the end of its PID namespace has normally ended them all)."""
        deadline = time.monotonic() + seconds
        procs = self.control("cgroup.procs")
        while time.monotonic() < deadline:
            with open(procs) as handle:
                pids = [int(p) for p in handle.read().split() if int(p) != keep]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self, seconds: float = 5.0) -> None:
        """Kill every process in the slot, the zygote included (``cgroup.kill`` where the kernel
        has it), and remove its cgroup(s) once they are empty (waits up to ``seconds``)."""
        self._close_peak()
        kill = self.control("cgroup.kill")
        if self.plan.version == 2 and os.path.exists(kill):
            linux.write_control(kill, "1")
        else:
            for folder in self.folders:
                try:
                    with open(os.path.join(folder, "cgroup.procs")) as handle:
                        pids = handle.read().split()
                except FileNotFoundError:
                    continue  # a killed run made it in some hierarchies only
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        _remove(self.folders, seconds)


def _remove(folders: tuple[str, ...], seconds: float) -> None:
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
