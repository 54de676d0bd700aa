"""Grading a class through a local 2-worker Dask cluster (``mlmcourse cluster``) versus
``mlmcourse grade --jobs 2`` on the same machine.

    python benchmarks/cluster.py [ASSIGNMENT] [--students 400]

Generates the class as ``benchmarks/grading.py`` does, grades it locally with ``--jobs 2``, then
starts a scheduler and two workers of one slot each on 127.0.0.1 (mutual TLS, new certificates)
and grades a fresh copy through them. Prints both wall times, the overhead ratio
cluster/local, the scheduler's cost per task (a round trip of trivial tasks through the same
TLS scheduler, per task) and whether every cell's score agrees. Run as root (the workers'
sandboxes). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading import course_copy, make_class

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
    subprocess.run([*MLMCOURSE, "grade", assignment, str(subs), "--out",
                    str(out), "--course", str(course), *options], capture_output=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", nargs="?", default="ex2_masking")
    parser.add_argument("--students", type=int, default=400)
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        subs = make_class(args.assignment, args.students, work)
        local_course = course_copy(work, f"{args.assignment}-local", args.assignment, env)
        cluster_course = course_copy(work, f"{args.assignment}-cluster", args.assignment, env)
        local = grade(args.assignment, local_course, subs, work / "out-local", "--jobs", "2")
        certs = work / "certs"
        subprocess.run([*MLMCOURSE, "cluster", "certs", str(certs)], check=True,
                       capture_output=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        address = f"tls://127.0.0.1:{port}"
        processes = [start(["scheduler", "--certs", str(certs), "--port", str(port)],
                           work / "scheduler.log", "listening on")]
        try:
            for name in ("worker-1", "worker-2"):
                processes.append(start(["worker", address, "--certs", str(certs),
                                        "--slots", "1"], work / f"{name}.log", "Registered to"))
            remote = grade(args.assignment, cluster_course, subs, work / "out-cluster",
                           "--cluster", address, "--certs", str(certs))
            per_task = scheduler_cost(address, certs)
        finally:
            for process in reversed(processes):
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
        same = rows(work / "out-local") == rows(work / "out-cluster")
    print(f"{args.students} submissions of {args.assignment}")
    print(f"local --jobs 2:          {local:8.1f} s")
    print(f"cluster, 2 workers x 1:  {remote:8.1f} s")
    print(f"overhead cluster/local:  {remote / local:8.2f}x")
    print(f"scheduler cost per task: {per_task * 1000:8.2f} ms")
    print(f"same scores every cell:  {same}")


if __name__ == "__main__":
    main()
