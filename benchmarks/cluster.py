"""Grading a class through a local 2-worker Dask cluster (``mlmcourse cluster``) versus
``mlmcourse grade --jobs 2`` on the same machine, and a projection to a large cluster.

    python benchmarks/cluster.py [ASSIGNMENT] [--students 400] [--small 20]

Generates the class as ``benchmarks/grading.py`` does (and a small one of ``--small`` students)
and grades each class in a fresh copy of the released course:

- locally with ``--jobs 2``, the large and the small class: the difference gives the marginal
  time per submission, the small class the fixed start-up;
- through a scheduler and two workers of one slot each on 127.0.0.1 (mutual TLS, new
  certificates): *cold*, the clock running from the start of the scheduler and workers to the
  end of the run (what a one-off run costs), then *warm* on the same workers (what a standing
  cluster costs), the large and the small class;
- the large and the small class once more, locally, each with the results and autograded
  notebooks of its first run but an empty gradebook: nothing is executed, everything is recorded
  (gradebook, feedback, report); the difference is the client's recording time per submission
  (a lower bound: a new result's autograded notebook is also written).

Prints the wall times, the overhead ratios cluster/local (cold, warm, and of the marginal times),
the scheduler's cost per task (trivial tasks through the same TLS scheduler), whether every cell's
score agrees, and a projection to 10,000 submissions on 20 workers of 8 slots from the measured
costs. Run as root (the workers' sandboxes). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading import course_copy, make_class, release_once

MLMCOURSE = [sys.executable, "-m", "mlmcourse.cli"]


def start(words: list[str], log: Path, ready: str) -> subprocess.Popen:
    """A ``mlmcourse cluster`` process in a session of its own, once ``ready`` is logged."""
    with log.open("wb") as out:
        process = subprocess.Popen([*MLMCOURSE, "cluster", *words], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None:
            sys.exit(f"{log.name}: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def grade(assignment: str, course: Path, subs: Path, out: Path, *options: str) -> float:
    """Wall seconds of one ``mlmcourse grade`` run."""
    started = time.monotonic()
    done = subprocess.run([*MLMCOURSE, "grade", assignment, str(subs), "--out", str(out),
                           "--course", str(course), *options], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: some students fail, as the class is made to
        sys.exit(f"mlmcourse grade {' '.join(options)} exited with {done.returncode}:\n"
                 f"{done.stderr[-2000:]}")
    return time.monotonic() - started


def scheduler_cost(address: str, certs: Path, tasks: int = 1000) -> float:
    """Seconds per trivial task sent through the scheduler and back."""
    from distributed import Client

    from mlmcourse.grading.cluster.certs import security

    with Client(address, security=security(certs, "client"), set_as_default=False) as client:
        client.gather(client.map(abs, range(10), pure=False))  # warm
        started = time.monotonic()
        client.gather(client.map(abs, range(tasks), pure=False))
        return (time.monotonic() - started) / tasks


def rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "grades.csv").open()))


def cluster_processes(work: Path, certs: Path, port: int) -> list[subprocess.Popen]:
    """A scheduler on ``port`` and two workers of one slot each, once all are ready."""
    address = f"tls://127.0.0.1:{port}"
    processes = [start(["scheduler", "--certs", str(certs), "--port", str(port)],
                       work / "scheduler.log", "listening on")]
    for name in ("worker-1", "worker-2"):
        processes.append(start(["worker", address, "--certs", str(certs), "--slots", "1"],
                               work / f"{name}.log", "Registered to"))
    return processes


def projection(worker_seconds: float, per_task: float, recording: float,
               submissions: int = 10_000, workers: int = 20, slots: int = 8) -> None:
    """Print how long ``submissions`` would take on ``workers`` x ``slots`` from the measured
    costs per submission, and which stage limits first (they run as a pipeline)."""
    stages = {"workers (sandboxed grading)": submissions * worker_seconds / (workers * slots),
              "scheduler (one process)": submissions * per_task,
              "client recording (gradebook, feedback)": submissions * recording}
    print(f"projection: {submissions} submissions on {workers} workers x {slots} slots")
    print(f"  workers:   {submissions} x {worker_seconds * 1000:.0f} ms per slot / "
          f"{workers * slots} slots")
    print(f"  scheduler: {submissions} x {per_task * 1000:.2f} ms per task")
    print(f"  recording: {submissions} x {recording * 1000:.1f} ms per submission")
    for name, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {name:<40} {seconds:8.1f} s")
    print(f"  limits first: {max(stages, key=stages.get)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", nargs="?", default="ex2_masking")
    parser.add_argument("--students", type=int, default=400, help="the large class")
    parser.add_argument("--small", type=int, default=20,
                        help="the small class, for the fixed costs (default: 20)")
    args = parser.parse_args()
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        released = release_once(work, args.assignment, env)
        large = make_class(args.assignment, args.students, work / "large", released)
        small = make_class(args.assignment, args.small, work / "small", released)

        def run(name: str, subs: Path, *options: str, out: Path | None = None) -> float:
            return grade(args.assignment, course_copy(work, name), subs,
                         out or work / f"out-{name}", *options)

        local = run("local", large, "--jobs", "2")
        local_small = run("local-small", small, "--jobs", "2")

        def record_only(name: str, subs: Path, graded: str) -> float:
            """The class graded before in the course ``graded`` (results and autograded
            notebooks), recorded again into an empty gradebook: nothing runs."""
            shutil.copytree(work / graded, work / name)
            for database in (work / name).glob("gradebook.db*"):
                database.unlink()
            shutil.copytree(work / f"out-{graded}" / "results", work / f"out-{name}" / "results")
            return grade(args.assignment, work / name, subs, work / f"out-{name}", "--jobs", "2")

        recording = record_only("record", large, "local")
        recording_small = record_only("record-small", small, "local-small")
        certs = work / "certs"
        subprocess.run([*MLMCOURSE, "cluster", "certs", str(certs)], check=True,
                       capture_output=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        address = f"tls://127.0.0.1:{port}"
        to_cluster = ("--cluster", address, "--certs", str(certs))
        started = time.monotonic()
        processes = cluster_processes(work, certs, port)
        try:
            startup = time.monotonic() - started
            cold = startup + run("cold", large, *to_cluster)
            warm = run("warm", large, *to_cluster)
            warm_small = run("warm-small", small, *to_cluster)
            per_task = scheduler_cost(address, certs)
        finally:
            for process in reversed(processes):
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
        same = rows(work / "out-local") == rows(work / "out-cold") == rows(work / "out-warm")

    extra = args.students - args.small
    marginal_local = (local - local_small) / extra
    marginal_cluster = (warm - warm_small) / extra
    record = (recording - recording_small) / extra
    print(f"{args.students} submissions of {args.assignment} ({args.small} for the fixed costs)")
    print(f"local --jobs 2:                   {local:8.1f} s  (small class {local_small:.1f} s)")
    print(f"cluster 2 x 1, cold:              {cold:8.1f} s  (of which the cluster's start-up "
          f"{startup:.1f} s)")
    print(f"cluster 2 x 1, warm:              {warm:8.1f} s  (small class {warm_small:.1f} s)")
    print(f"overhead cluster/local, cold:     {cold / local:8.2f}x   (target <= 1.25x)")
    print(f"overhead cluster/local, warm:     {warm / local:8.2f}x")
    print(f"marginal per submission:          local {marginal_local * 1000:.0f} ms, cluster "
          f"{marginal_cluster * 1000:.0f} ms: {marginal_cluster / marginal_local:.2f}x")
    print(f"recording per submission (client): {record * 1000:.1f} ms  (recording the results "
          f"alone: {recording:.1f} s, small class {recording_small:.1f} s)")
    print(f"scheduler cost per task:          {per_task * 1000:8.2f} ms")
    print(f"same scores every cell:           {same}")
    # two slots grade side by side: one slot takes twice the marginal time per submission
    projection(2 * marginal_cluster, per_task, record)


if __name__ == "__main__":
    main()
