"""The grader on a cgroup-v2-only kernel: a CI leg that boots Debian's stock kernel in a VM.

Most machines an instructor has mount cgroup **v2 only**; the machines this project is developed
on are hybrid (v1 and v2). This leg boots Debian's own kernel (``linux-image-amd64``) with
virtme-ng under QEMU, over this machine's file system (read-only, except one shared folder), and
runs there, as root with ``CI`` set:

1. a check that the VM really is cgroup-v2-only (cgroup2 at ``/sys/fs/cgroup`` with the ``cpu``,
   ``memory`` and ``pids`` controllers, no cgroup v1 hierarchy, this process in the v2 tree);
2. the sandbox tests, ``pytest tests/grading/test_grade_sandbox.py`` (but the settled-image test, a
   speed-only step the emulated kernel declines);
3. ``mlmcourse grade`` on a small hostile class (:data:`CLASS`: honest and blank students, a
   memory hog, a fork bomb, busy children, a kill of everything, ...), built from the test corpora
   ``tests/hostile/corpus.py`` and ``tests/hostile/trial.py``;
4. the same class through ``mlmcourse cluster``: a scheduler and a worker of two slots on
   127.0.0.1 (mutual TLS), the worker sandboxing on cgroup v2.

The same class is graded on this host too, and each student's status, failure kind, score and
per-cell points must be identical in all three gradings and as :data:`CLASS` expects. A VM that
outlives its budget (:data:`VM_SECONDS`) is killed and booted once more (an emulated VM stalled
once in CI); its processes (listed when a step runs long) and its console are printed, and the
verdict says so. The leg prints the time of each step and exits 1 if anything failed (2 if it
could not start: a missing tool, a bad argument).

What a fresh machine lacks is installed first: the Debian packages :data:`APT_PACKAGES` and
virtme-ng (:data:`VIRTME_NG`) in its own virtual environment, ``~/.cache/mlmcourse/vng``
(``MLMCOURSE_VNG`` overrides the folder). QEMU runs without KVM (``--disable-kvm``): with KVM the
boot hangs on these machines, and software emulation is roughly ten times slower, which is why
the class is small.

Usage (as root, from anywhere)::

    python3 scripts/cgroup2_leg.py                  # this checkout, with its .venv/bin/python
    python3 scripts/cgroup2_leg.py --checkout DIR --python PY
    python3 scripts/cgroup2_leg.py --benchmark "ex2_masking --students 6 --large 30 --no-nbgrader" \
        --vm-seconds 3600                           # the grading benchmark's ratios in the VM

The script itself needs only the standard library; the grader runs with ``--python`` (default
``CHECKOUT/.venv/bin/python``), and ``CHECKOUT`` comes first on its ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APT_PACKAGES = ["qemu-system-x86", "linux-image-amd64", "busybox-static"]
VIRTME_NG = "virtme-ng==1.42"
VNG_HOME = Path(os.environ.get("MLMCOURSE_VNG", Path.home() / ".cache" / "mlmcourse" / "vng"))
VM_MEMORY, VM_CPUS = "4G", 2
VM_SECONDS = 1500  # the whole VM, boot to power-off: 500 s in CI with the cluster class,
# 1000 s in a CI run on the same kind of machine three hours later (emulation's speed varies)
BOOTS = 2  # a VM killed for time is booted once more (emulation has stalled once in CI)
SLOW_STEP_SECONDS = 420  # a step running this long shows the VM's processes
TEST_SECONDS = 240  # one sandbox test in the VM (they take 1-15 s there)
STARTUP_SECONDS = 300  # a cluster's scheduler or worker until it is ready, emulated
GRADE_TIMEOUT = 900  # per notebook, both hosts: emulation is ~10x slower, and a busy neighbour
# in the same slot leaves a notebook a fraction of one emulated CPU
# folders that virtme-ng mounts afresh in the VM (tmpfs): the host's files there are not seen
HIDDEN_IN_VM = [Path(p) for p in ("/run", "/dev/shm", "/var/tmp", "/var/log", "/var/cache",
                                  "/var/lib/apt", "/var/lib/private")]
# the controllers a v2 grader needs in the VM's root cgroup
CONTROLLERS = {"cpu", "memory", "pids"}

# student -> (status, score) or ("failed", a regular expression the reason must match); the
# assignment is trial.py's softmax (4 auto-graded points, one written answer)
CLASS: dict[str, tuple[str, object]] = {
    "honest_a": ("graded", 4.0),
    "blank_release": ("graded", 0.0),
    "memory_hog": ("failed", "memory limit"),
    "fork_bomb": ("graded", 4.0),
    "busy_children": ("graded", 4.0),
    "kill_everything": ("graded", 4.0),
}
"""The issue's minimum, kept small: under software emulation every student costs about ten
times what it costs on the host."""


# --- the class, on either host -----------------------------------------------------------------

def write_class(checkout: Path, work: Path) -> tuple[Path, Path]:
    """The course (``work/course``) and one folder per student of :data:`CLASS`
    (``work/subs``), from the checkout's hostile corpora."""
    sys.path.insert(0, str(checkout / "tests" / "hostile"))
    import corpus
    import trial

    course = trial.write_course(work / "course")
    subs = work / "subs"
    everything = {**corpus.attacks(trial.source_notebook()), **trial.attacks()}
    values = {"course": course, "out": work / "out", "submissions": subs, "repo": checkout}
    for name in CLASS:
        data = json.dumps(everything[name]).encode()
        for key, value in values.items():
            data = data.replace(("{" + key + "}").encode(), str(value).encode())
        (subs / name).mkdir(parents=True)
        (subs / name / "softmax.ipynb").write_bytes(data)
    return course, subs


def grade_class(checkout: Path, python: str, work: Path,
                where: tuple[str, ...] = ("--jobs", "2")) -> dict:
    """Grade :data:`CLASS` with ``mlmcourse grade`` (on this machine's slots, or ``where`` says
    which cluster): the exit code, its error output's last lines, and per student the status,
    failure kind, reason, score and per-cell points."""
    course, subs = write_class(checkout, work)
    out = work / "out"
    command = [python, "-m", "mlmcourse", "grade", "softmax", str(subs), "--out", str(out),
               "--course", str(course), *where, "--timeout", str(GRADE_TIMEOUT)]
    code, output = run_shown(command, checkout)
    grades = out / "grades.csv"
    if not grades.exists():
        last = [line for line in output.splitlines() if "grading softmax:" not in line]
        return {"exit": code, "error": "\n".join(last[-5:]), "students": {}}
    with grades.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        cells = header[header.index("max_score") + 1:header.index("submitted_at")]
        students = {r["student_id"]: {"status": r["status"], "failure": r["failure"],
                                      "reason": r["reason"], "score": r["score"],
                                      "cells": {c: r[c] for c in cells}} for r in reader}
    return {"exit": code, "error": "", "students": students}


def run_shown(command: list[str], checkout: Path) -> tuple[int, str]:
    """Run ``command`` in the checkout with :func:`grader_env`, its output shown as it comes;
    returns its exit code and output."""
    process = subprocess.Popen(command, cwd=checkout, env=grader_env(checkout),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    assert process.stdout is not None
    chunks = []
    while chunk := process.stdout.read1(4096):
        chunks.append(chunk)
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return process.wait(), b"".join(chunks).decode(errors="replace")


def grader_env(checkout: Path) -> dict[str, str]:
    """The environment the grader and pytest run with: CI set (a missing tool fails a test
    instead of skipping it), the checkout first on ``sys.path``, no bytecode written."""
    return {**os.environ, "CI": "true", "PYTHONPATH": str(checkout),
            "PYTHONDONTWRITEBYTECODE": "1"}


def check_class(graded: dict) -> list[str]:
    """What is wrong with one host's grading of :data:`CLASS` (empty if nothing)."""
    if graded["exit"] not in (0, 1) or not graded["students"]:
        return [f"mlmcourse grade exited with {graded['exit']} and graded nobody:\n"
                f"{graded['error'].strip()}"]
    problems = []
    students = graded["students"]
    if set(students) != set(CLASS):
        problems.append(f"students graded {sorted(students)}, expected {sorted(CLASS)}")
    for name, (status, expected) in CLASS.items():
        row = students.get(name)
        if row is None:
            continue
        if status == "failed":
            ok = row["status"] == "failed" and re.search(str(expected), row["reason"])
        else:
            ok = row["status"] == status and float(row["score"] or "nan") == expected
        if not ok:
            problems.append(f"{name}: expected {status} {expected}, got {row}")
    return problems


def compare(vm: dict, host: dict) -> list[str]:
    """Students whose status, failure kind, score or per-cell points differ between hosts."""
    keys = ("status", "failure", "score")
    problems = []
    for name in sorted(set(vm["students"]) | set(host["students"])):
        a, b = vm["students"].get(name), host["students"].get(name)
        if a is None or b is None:
            problems.append(f"{name}: graded {'on the host' if a is None else 'in the VM'} only")
            continue
        a, b = {**a, **a["cells"]}, {**b, **b["cells"]}
        names = dict.fromkeys((*keys, *a["cells"], *b["cells"]))
        differ = [k for k in names if a.get(k) != b.get(k)]
        if differ:
            problems.append(f"{name}: " + ", ".join(f"{k} {a.get(k)!r} in the VM, {b.get(k)!r} "
                                                    "on the host" for k in differ))
    return problems


# --- inside the VM -----------------------------------------------------------------------------

@contextlib.contextmanager
def cluster(checkout: Path, python: str, work: Path) -> Iterator[tuple[str, ...]]:
    """A scheduler and a worker of two slots on 127.0.0.1 (``mlmcourse cluster``, new
    certificates); yields the ``mlmcourse grade`` options that reach it."""
    certs = work / "certs"
    subprocess.run([python, "-m", "mlmcourse", "cluster", "certs", str(certs)], check=True,
                   cwd=checkout, env=grader_env(checkout), capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tls://127.0.0.1:{port}"
    roles = {"scheduler": (["scheduler", "--port", str(port)], "listening on"),
             "worker": (["worker", address, "--slots", "2", "--timeout", str(GRADE_TIMEOUT)],
                        "Registered to")}
    started: list[subprocess.Popen] = []
    try:
        for role, (words, ready) in roles.items():
            log = work / f"{role}.log"
            with log.open("wb") as out:
                started.append(subprocess.Popen(
                    [python, "-m", "mlmcourse", "cluster", *words, "--certs", str(certs)],
                    cwd=checkout, env=grader_env(checkout), stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + STARTUP_SECONDS
            while ready not in log.read_text(errors="replace"):
                if started[-1].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster's {role} did not start:\n"
                                       f"{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
        yield ("--cluster", address, "--certs", str(certs))
    finally:
        for process in reversed(started):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cgroup2_only() -> list[str]:
    """Why this kernel is not a cgroup-v2-only one (empty if it is)."""
    problems = []
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    v1 = [m[1] for m in mounts if m[2] == "cgroup"]
    if v1:
        problems.append(f"cgroup v1 hierarchies are mounted: {', '.join(v1)}")
    if not any(m[1] == "/sys/fs/cgroup" and m[2] == "cgroup2" for m in mounts):
        problems.append("/sys/fs/cgroup is not a cgroup2 mount")
    membership = Path("/proc/self/cgroup").read_text().split()
    if not membership or any(not line.startswith("0::") for line in membership):
        problems.append(f"this process is in v1 hierarchies: {membership}")
    controllers = Path("/sys/fs/cgroup/cgroup.controllers")
    have = set(controllers.read_text().split()) if controllers.exists() else set()
    if CONTROLLERS - have:
        problems.append(f"cgroup v2 lacks the controllers {sorted(CONTROLLERS - have)}")
    return problems


def show_processes(step: str) -> None:
    """Print the VM's processes (not the kernel's threads) with their state and the kernel
    function each waits in: shown for a step that is slow."""
    listing = subprocess.run(["ps", "--ppid", "2", "-p", "2", "--deselect", "--forest", "-o",
                              "pid,ppid,stat,wchan:28,etimes,rss,args:160"],
                             capture_output=True, text=True, check=False).stdout
    print(f"--- {step} has run {SLOW_STEP_SECONDS} s; the VM's processes:\n{listing}", flush=True)


def inside(checkout: Path, python: str, shared: Path, benchmark: list[str] | None) -> int:
    """The VM's part: the four steps, each timed; ``shared/vm.json`` gets their outcome and the
    class's grades (with ``benchmark``: only ``benchmarks/grading.py`` with those arguments).
    Returns the exit code."""
    os.environ["HOME"] = tempfile.mkdtemp(prefix="mlmcourse-home-")  # the host's is read-only
    report: dict = {"uptime_at_start": float(Path("/proc/uptime").read_text().split()[0]),
                    "kernel": os.uname().release, "steps": {}}

    def step(name: str, run: Callable[[], list[str]]) -> bool:
        print(f"== {name}", flush=True)
        start = time.monotonic()
        report["running"] = name  # what the host names if the VM is killed meanwhile
        (shared / "vm.json").write_text(json.dumps(report, indent=1))
        # a step still running at SLOW_STEP_SECONDS shows the VM's processes (state, the kernel
        # function each waits in): if the VM then outlives its budget, the log says where it was
        watch = threading.Timer(SLOW_STEP_SECONDS, show_processes, args=(name,))
        watch.start()
        try:
            problems = run()
        except Exception as exc:  # a broken step is reported like a failed one
            problems = [f"{type(exc).__name__}: {exc}"]
        finally:
            watch.cancel()
        del report["running"]
        report["steps"][name] = {"seconds": round(time.monotonic() - start, 1),
                                 "problems": problems}
        (shared / "vm.json").write_text(json.dumps(report, indent=1))
        for problem in problems:
            print(f"FAILED {name}: {problem}", flush=True)
        return not problems

    def pytest(seconds: int, *selection: str) -> list[str]:
        # without the plugins these tests do not use: each import costs ten times more here;
        # each test named as it starts (-v, unbuffered), and one that hangs fails alone with its
        # traceback (--timeout) instead of taking the leg's whole budget with it
        command = [python, "-u", "-m", "pytest", "-v", "--tb=short", "--timeout",
                   str(seconds), "-p", "no:cacheprovider",
                   "-p", "no:hypothesispytest", "-p", "no:anyio", *selection]
        code, output = run_shown(command, checkout)
        if code == 0:
            return []
        lines = output.splitlines()
        errors = list(dict.fromkeys(line for line in lines if line.startswith("E ")))[:3]
        return [f"pytest exited with {code}: {lines[-1] if lines else ''}", *errors]

    def sandbox_tests() -> list[str]:
        # the settled-image test checks a speed-only step (2 MB pages for cheap forks), which the
        # emulated kernel declines: it is checked on the host; every isolation test runs here
        return pytest(TEST_SECONDS, "tests/grading/test_grade_sandbox.py", "--deselect",
                      "tests/grading/test_grade_sandbox.py::"
                      "test_the_zygotes_image_is_settled_for_cheap_forks")

    def cluster_class() -> list[str]:
        work = Path(tempfile.mkdtemp(prefix="mlmcourse-cgroup2-cluster-"))
        with cluster(checkout, python, work) as where:
            report["cluster class"] = grade_class(checkout, python, work, where)
        return check_class(report["cluster class"])

    def hostile_class() -> list[str]:
        work = Path(tempfile.mkdtemp(prefix="mlmcourse-cgroup2-"))
        report["class"] = grade_class(checkout, python, work)
        return check_class(report["class"])

    def grading_benchmark() -> list[str]:
        assert benchmark is not None
        code, _ = run_shown([python, "-u", "benchmarks/grading.py", *benchmark], checkout)
        return [f"the benchmark exited with {code}"] if code else []

    if step("cgroup2-only", cgroup2_only):
        if benchmark is not None:
            step("benchmark", grading_benchmark)
        else:
            step("sandbox tests", sandbox_tests)
            step("hostile class", hostile_class)
            step("cluster class", cluster_class)
    (shared / "vm.json").write_text(json.dumps(report, indent=1))
    return 0 if all(not s["problems"] for s in report["steps"].values()) else 1


# --- on the host -------------------------------------------------------------------------------

def install_missing() -> Path:
    """Install the Debian packages and virtme-ng if missing; returns the ``vng`` program."""
    missing = [p for p in APT_PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout != "install ok installed"]
    if missing:
        apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=apt, stdin=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=apt,
                       stdin=subprocess.DEVNULL)
    vng = VNG_HOME / "bin" / "vng"
    if not vng.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VNG_HOME)], check=True)
        subprocess.run([str(VNG_HOME / "bin" / "pip"), "install", "-q", VIRTME_NG], check=True,
                       stdin=subprocess.DEVNULL)
    return vng


def debian_kernel() -> Path:
    """The newest Debian kernel image in ``/boot`` (``MLMCOURSE_VM_KERNEL`` overrides)."""
    if os.environ.get("MLMCOURSE_VM_KERNEL"):
        return Path(os.environ["MLMCOURSE_VM_KERNEL"])

    def version(path: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", path.name)]

    images = sorted(Path("/boot").glob("vmlinuz-*-amd64"), key=version)
    if not images:
        raise SystemExit("cgroup2 leg: no /boot/vmlinuz-*-amd64 although linux-image-amd64 is "
                         "installed")
    return images[-1]


def boot(vng: Path, kernel: Path, checkout: Path, python: str, shared: Path,
         benchmark: list[str] | None = None, seconds: int = VM_SECONDS) -> int:
    """Run :func:`inside` in the VM, showing its output (``shared/vm.log``) as it comes; returns
    its exit code, or 124 if the VM outlived ``seconds`` (then it is killed)."""
    log = shared / "vm.log"
    inner = shlex.join([python, str(Path(__file__).resolve()),
                        "--inside", str(shared), "--checkout", str(checkout), "--python", python,
                        *(["--benchmark", shlex.join(benchmark)] if benchmark is not None else [])])
    command = [str(vng), "--disable-kvm", "--run", str(kernel), "--memory", VM_MEMORY,
               "--cpus", str(VM_CPUS), "--rwdir", str(shared),
               "--exec", f"{inner} > {shlex.quote(str(log))} 2>&1"]
    # vng runs QEMU and virtme-run, which it finds on PATH
    env = {**os.environ, "PATH": f"{vng.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    console = shared / "console.log"
    with console.open("wb") as sink:
        vm = subprocess.Popen(command, cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                              stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline, shown = time.monotonic() + seconds, 0
    while True:
        try:
            code = vm.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if log.exists():
            with log.open("rb") as handle:
                handle.seek(shown)
                new = handle.read()
            shown += len(new)
            print(new.decode(errors="replace"), end="", flush=True)
        if code is not None:
            break
        if time.monotonic() > deadline:
            os.killpg(vm.pid, signal.SIGKILL)
            vm.wait()
            print(f"cgroup2 leg: the VM ran longer than {seconds} s and was killed")
            code = 124
            break
    if code != 0:
        print("--- the VM's console (last lines)")
        print(console.read_bytes()[-3000:].decode(errors="replace"))
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="the checkout whose grader and tests run (default: this one)")
    parser.add_argument("--python", default=None,
                        help="its Python (default: CHECKOUT/.venv/bin/python)")
    parser.add_argument("--inside", type=Path, metavar="SHARED",
                        help="(used by the leg itself) run the VM's part, reporting into SHARED")
    parser.add_argument("--benchmark", metavar="ARGS", type=shlex.split,
                        help="instead of the leg: run `benchmarks/grading.py ARGS` in the VM and "
                             "show what it prints (its ratios under an emulated CPU)")
    parser.add_argument("--vm-seconds", type=int, default=VM_SECONDS,
                        help=f"the VM's budget, boot to power-off (default {VM_SECONDS})")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    python = args.python or str(checkout / ".venv" / "bin" / "python")
    if args.inside:
        return inside(checkout, python, args.inside, args.benchmark)
    if os.geteuid() != 0:
        parser.error("the leg needs root (packages, the sandbox)")
    if not Path(python).exists():
        parser.error(f"{python} does not exist: run `make env` in {checkout} first")
    for path in (checkout, Path(python).resolve()):
        if any(path.is_relative_to(top) for top in HIDDEN_IN_VM):
            parser.error(f"{path} is in a folder the VM replaces with an empty one "
                         f"({', '.join(map(str, HIDDEN_IN_VM))}): use a checkout elsewhere")

    times: dict[str, float] = {}
    start = time.monotonic()
    vng = install_missing()
    kernel = debian_kernel()
    times["install"] = time.monotonic() - start
    problems: list[str] = []
    stalls: list[str] = []
    vm = f"{kernel.name}, {VM_CPUS} CPUs, {VM_MEMORY}, no KVM"
    if args.benchmark is not None:
        shared = Path(tempfile.mkdtemp(prefix="mlmcourse-cgroup2-bench-", dir="/tmp"))
        print(f"== benchmarks/grading.py {shlex.join(args.benchmark)} in the VM ({vm})",
              flush=True)
        code = boot(vng, kernel, checkout, python, shared, args.benchmark, args.vm_seconds)
        return 0 if code == 0 else 1

    start = time.monotonic()
    print("== the class on this host", flush=True)
    host_work = Path(tempfile.mkdtemp(prefix="mlmcourse-cgroup2-"))
    host = grade_class(checkout, python, host_work)
    times["host class"] = time.monotonic() - start
    problems += [f"host: {p}" for p in check_class(host)]

    start = time.monotonic()
    for attempt in range(1, BOOTS + 1):
        shared = Path(tempfile.mkdtemp(prefix="mlmcourse-cgroup2-vm-", dir="/tmp"))  # in the VM
        print(f"== the VM ({vm}; files in {shared})", flush=True)
        code = boot(vng, kernel, checkout, python, shared, seconds=args.vm_seconds)
        if code != 124 or attempt == BOOTS:
            break
        # an emulated VM that stalls (once in CI, with no test even reported in 1200 s) is
        # booted once more; the stalled boot's processes and console are shown above
        stalls.append(f"boot {attempt} ran out of its {args.vm_seconds} s ({shared})")
        print(f"== boot {attempt} stalled: booting the VM once more", flush=True)
    times["VM in all"] = time.monotonic() - start
    report = json.loads((shared / "vm.json").read_text()) if (shared / "vm.json").exists() else {}
    if not report:
        problems.append(f"the VM exited with {code} before its first step")
    for name, result in report.get("steps", {}).items():
        times[f"VM: {name}"] = result["seconds"]
        problems += [f"VM, {name}: {p}" for p in result["problems"]]
    if "running" in report:
        problems.append(f"VM, {report['running']}: unfinished when the VM ended")
    if "uptime_at_start" in report:
        times["VM: boot (guest uptime at start)"] = report["uptime_at_start"]
    if code != 0 and report and not any(r["problems"] for r in report["steps"].values()):
        problems.append(f"the VM exited with {code}")
    for name, label in (("class", "VM"), ("cluster class", "VM's cluster")):
        if name in report and report[name]["students"] and host["students"]:
            problems += [f"{label} vs host: {p}" for p in compare(report[name], host)]
        elif report:
            problems.append(f"{label} vs host: no per-cell scores to compare (a grading run "
                            "failed)")

    print("== cgroup2 leg timings")
    for name, seconds in times.items():
        print(f"  {name:<40} {seconds:7.1f} s")
    if problems:
        problems = [*stalls, *problems]
        print("== cgroup2 leg FAILED")
        for problem in problems:
            print(f"  {problem}")
        return 1
    shutil.rmtree(shared)
    shutil.rmtree(host_work)
    print("== cgroup2 leg passed: per-cell scores identical in the VM, through its cluster and "
          "on this host"
          + (f" (after a stalled boot: {'; '.join(stalls)})" if stalls else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
