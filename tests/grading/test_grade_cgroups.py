"""The grader's cgroups (``mlmcourse.grading.sandbox.cgroups``): which version a host gets, and
how a cgroup v2 run's subtree is set up, on sample text and a cgroup tree made of plain files.
The real proof is a kernel: ``tests/grading/test_grade_sandbox.py`` runs on cgroup v1 here and on a
cgroup-v2-only kernel in a VM."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mlmcourse.grading.sandbox import cgroups
from mlmcourse.grading.sandbox.policy import Limits

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = "9:name=systemd:/\n8:pids:/\n4:memory:/api/b9\n1:cpu:/\n0::/\n"
V2_ONLY = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
"""
MERGED = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""
ALL = ["+cpu +memory +pids"]


def test_v1_where_its_three_hierarchies_are_mounted_else_v2() -> None:
    assert cgroups.locate(HYBRID, HYBRID_CGROUP) == (1, (
        "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory/api/b9", "/sys/fs/cgroup/pids"))
    scope = "/user.slice/user-1000.slice/session-2.scope"
    assert cgroups.locate(V2_ONLY, f"0::{scope}\n") == (2, (f"/sys/fs/cgroup{scope}",))
    # v1 without pids (its cpu mounted together with cpuacct): the cgroup2 mount, if any
    assert cgroups.locate(MERGED + V2_ONLY, "0::/\n") == (2, ("/sys/fs/cgroup",))
    with pytest.raises(cgroups.CgroupsUnavailable, match="v1 hierarchies pids nor a cgroup2"):
        cgroups.locate(MERGED, "3:cpu,cpuacct:/\n2:memory:/\n")


def test_v2_inside_a_container_is_found_below_the_mounts_root() -> None:
    mount = "30 24 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroups.locate(mount, "0::/kubepods/pod1/app\n") == (2, ("/sys/fs/cgroup/app",))
    assert cgroups.locate(mount, "0::/kubepods/pod1\n") == (2, ("/sys/fs/cgroup",))
    with pytest.raises(cgroups.CgroupsUnavailable, match="outside the cgroup2 file system"):
        cgroups.locate(mount, "0::/kubepods/pod2\n")


class FakeTree:
    """A cgroup v2 tree of plain files that keeps the kernel's rules this module relies on:
    writing a pid to ``cgroup.procs`` moves it there; a cgroup other than the root (which has
    no ``cgroup.type``) that holds processes cannot hand out controllers (EBUSY)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.writes = root, []
        monkeypatch.setattr(cgroups.linux, "write_control", self.write)

    def cgroup(self, relative: str, procs: str = "", controllers: str = "cpu io memory pids",
               subtree: str = "", root: bool = False) -> Path:
        folder = self.root / relative
        folder.mkdir(parents=True, exist_ok=True)
        files = {"cgroup.procs": procs, "cgroup.controllers": controllers,
                 "cgroup.subtree_control": subtree} | ({} if root else {"cgroup.type": "domain"})
        for name, text in files.items():
            (folder / name).write_text(text)
        return folder

    def write(self, path: str, value: str) -> None:
        target = Path(path)
        self.writes.append((str(target.relative_to(self.root)), value))
        if target.name == "cgroup.procs":
            for procs in self.root.rglob("cgroup.procs"):
                procs.write_text(" ".join(p for p in procs.read_text().split() if p != value))
            target.write_text(f"{target.read_text() if target.exists() else ''} {value}")
            return
        folder = target.parent
        if (folder / "cgroup.type").exists() and (folder / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, "Device or resource busy")
        target.write_text(value)


def test_v2_moves_the_graders_cgroup_into_a_leaf_before_handing_out_controllers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakeTree(tmp_path, monkeypatch)
    own = tree.cgroup("system.slice/grade.scope", procs="41 42")
    run = cgroups.create_run_v2(own, "mlmcourse-grade-7")
    assert run == own / "mlmcourse-grade-7" and run.is_dir()
    scope = "system.slice/grade.scope"
    assert tree.writes == [(f"{scope}/mlmcourse-leaf/cgroup.procs", "41"),
                           (f"{scope}/mlmcourse-leaf/cgroup.procs", "42"),
                           (f"{scope}/cgroup.subtree_control", ALL[0]),
                           (f"{scope}/mlmcourse-grade-7/cgroup.subtree_control", ALL[0])]
    assert (own / "mlmcourse-leaf" / "cgroup.procs").read_text().split() == ["41", "42"]
    # a second run of the same process (now in the leaf) uses the same cgroup, moving nothing
    tree.writes.clear()
    (own / "cgroup.subtree_control").write_text("cpu memory pids")
    assert cgroups.create_run_v2(own / "mlmcourse-leaf", "again") == own / "again"
    assert tree.writes == [(f"{scope}/again/cgroup.subtree_control", ALL[0])]


def test_v2_in_the_root_cgroup_moves_nothing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakeTree(tmp_path, monkeypatch)
    root = tree.cgroup("", procs="1 41", root=True)
    cgroups.create_run_v2(root, "run")
    assert tree.writes == [("cgroup.subtree_control", ALL[0]),
                           ("run/cgroup.subtree_control", ALL[0])]
    assert not (root / cgroups.LEAF).exists()


def test_v2_refuses_without_the_controllers_naming_them_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakeTree(tmp_path, monkeypatch)
    own = tree.cgroup("user.slice/session-2.scope", procs="41", controllers="cpu io")
    with pytest.raises(cgroups.CgroupsUnavailable) as refusal:
        cgroups.create_run_v2(own, "run")
    message = str(refusal.value)
    assert "controllers memory, pids are not available" in message
    assert "systemd-run --scope -p Delegate=yes mlmcourse grade" in message
    assert tree.writes == [] and sorted(p.name for p in own.iterdir()) == [
        "cgroup.controllers", "cgroup.procs", "cgroup.subtree_control", "cgroup.type"]


def test_v2_refuses_when_the_kernel_refuses(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakeTree(tmp_path, monkeypatch)
    own = tree.cgroup("scope", procs="41")

    def busy(path: str, value: str) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(cgroups.linux, "write_control", busy)
    with pytest.raises(cgroups.CgroupsUnavailable, match="cannot set up the cgroup.*Delegate"):
        cgroups.create_run_v2(own, "run")


def test_slot_limits_and_figures_on_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files a v2 slot writes and reads; a kernel without ``memory.swap.max`` (no swap
    accounting) or a resettable ``memory.peak`` gets no such file, and the peak is 0."""
    tree = FakeTree(tmp_path, monkeypatch)
    slot = cgroups.Slot(cgroups.Plan(2, (str(tmp_path / "run"),)), "7-99")
    folder = tree.cgroup("run/7-99")
    for name in ("cpu.max", "memory.max", "pids.max"):
        (folder / name).write_text("max")
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n")
    assert slot.prepare(Limits(cpus=1.5, memory_bytes=256 << 20, processes=20)) == 2
    assert tree.writes == [("run/7-99/cpu.max", "150000 100000"),
                           ("run/7-99/memory.max", str(256 << 20)),
                           ("run/7-99/pids.max", "21")]
    assert not (folder / "memory.swap.max").exists()
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 5\noom_kill 5\n")
    assert slot.figures(2) == (0, 3)
    assert slot.control("cgroup.procs") == str(folder / "cgroup.procs")


def test_slot_control_files_on_v1_are_in_their_controllers_hierarchy() -> None:
    plan = cgroups.Plan(1, ("/c/cpu/run", "/c/memory/run", "/c/pids/run"))
    slot = cgroups.Slot(plan, "7-99")
    assert [slot.control(n) for n in ("cpu.stat", "memory.peak", "pids.max", "cgroup.procs")] \
        == ["/c/cpu/run/7-99/cpu.stat", "/c/memory/run/7-99/memory.peak",
            "/c/pids/run/7-99/pids.max", "/c/pids/run/7-99/cgroup.procs"]


def test_the_plan_of_this_host() -> None:
    """This host's own files give a plan of a version its mounts allow."""
    with open("/proc/self/mountinfo") as mountinfo, open("/proc/self/cgroup") as cgroup:
        version, own = cgroups.locate(mountinfo.read(), cgroup.read())
    assert (version, len(own)) in {(1, 3), (2, 1)}
    assert all(os.path.isdir(folder) for folder in own)
