"""Grading workers: warm processes (torch imported once) that each own a zygote and a job slot.

Each worker is a fresh interpreter (``python -m mlmcourse.grading.pool``) started with the
fixed environment of :func:`~mlmcourse.grading.sandbox.policy.worker_environment`, so it never
held the main process's memory or environment. It imports torch/NumPy/IPython/mlmcourse, uses
one thread, forks its zygote *before* reading any task, then grades the tasks it reads from
stdin (JSON lines) and writes results as JSON lines to fd 3. A worker that dies is replaced;
the submission it was grading is ``failed`` with the reason. Only the main process writes files
of record and the gradebook.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mlmcourse.grading.records import Result, Task
from mlmcourse.grading.sandbox.policy import worker_environment

RESULT_FD = 3


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def worker_main(slot: int, warm_modules: list[str]) -> None:
    """Body of the worker of job slot ``slot``; ``warm_modules`` are imported before the zygote
    is forked, so every sandbox starts with them loaded. Its sandboxes use the uid of its slot
    (two sandboxes running at once never share a uid, nor its process limit)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numpy  # noqa: F401 - warm imports shared with every sandbox
    import torch

    import mlmcourse.grading.misconceptions  # noqa: F401
    from mlmcourse.grading import trusted
    from mlmcourse.grading.sandbox.zygote import Zygote

    torch.set_num_threads(1)
    for name in warm_modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the setup cell will report it in the sandbox
            pass
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    results = os.fdopen(RESULT_FD, "w", buffering=1)
    zygote = Zygote()
    assignments: dict[str, trusted.TrustedAssignment] = {}
    for line in sys.stdin:
        task = Task.from_json(json.loads(line))
        if task.policy is not None:
            task.policy = {**task.policy, "uid": task.policy["uid"] + slot}
        try:
            source = Path(task.source)
            key = f"{source}:{source.stat().st_mtime_ns}"
            if key not in assignments:
                assignments[key] = trusted.load_trusted(source)
            result = trusted.grade(task, assignments[key], zygote)
        except Exception as exc:  # noqa: BLE001 - a grader bug must not stop the class
            result = Result.failed(task.student_id, task.assignment, 0.0,
                                   f"grader error: {type(exc).__name__}: {exc}"[:600],
                                   grader_error=True)
        results.write(json.dumps(result.to_json()) + "\n")
    zygote.close()


class Worker:
    """One worker process and the pipe its results come back on."""

    def __init__(self, slot: int, warm_modules: list[str], workroot: Path) -> None:
        self.slot = slot
        read_fd, write_fd = os.pipe()
        code = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
                "from mlmcourse.grading.pool import _start; _start()")
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(sys.path), str(write_fd), str(slot),
             json.dumps(warm_modules)],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), env=worker_environment(workroot),
            text=True, cwd=workroot,
        )
        os.close(write_fd)
        self.results = os.fdopen(read_fd, "r")
        self.task: Task | None = None

    def send(self, task: Task) -> None:
        self.task = task
        self.process.stdin.write(json.dumps(task.to_json()) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.results.close()


def _start() -> None:
    result_fd = int(sys.argv[2])
    if result_fd != RESULT_FD:
        os.dup2(result_fd, RESULT_FD)
        os.close(result_fd)
    worker_main(int(sys.argv[3]), json.loads(sys.argv[4]))


class WorkerPool:
    """N worker processes; each gets one task at a time; a dead one is replaced."""

    def __init__(self, jobs: int, warm_modules: list[str], workroot: Path) -> None:
        self.warm_modules, self.workroot = warm_modules, workroot
        self.workers = [Worker(slot, warm_modules, workroot) for slot in range(jobs)]
        self.replacements_left = 4 * jobs + 4

    def run(self, tasks: list[Task]) -> Iterator[Result]:
        """Yield one result per task, in completion order."""
        pending = list(reversed(tasks))
        selector = selectors.DefaultSelector()

        def feed(worker: Worker) -> None:
            worker.task = None
            if pending:
                worker.send(pending.pop())

        for worker in self.workers:
            selector.register(worker.results, selectors.EVENT_READ, worker)
            feed(worker)
        while any(w.task is not None for w in self.workers):
            for key, _ in selector.select(timeout=1.0):
                worker: Worker = key.data
                line = worker.results.readline()
                task = worker.task
                if line:
                    yield Result.from_json(json.loads(line))
                    feed(worker)
                    continue
                selector.unregister(worker.results)
                code = worker.process.wait()
                if task is not None:
                    yield Result.failed(task.student_id, task.assignment, 0.0,
                                        f"the grader's worker died (exit code {code}) while "
                                        "grading this submission", grader_error=True)
                worker.close()
                self.workers.remove(worker)
                if self.replacements_left > 0:
                    self.replacements_left -= 1
                    replacement = Worker(worker.slot, self.warm_modules, self.workroot)
                    self.workers.append(replacement)
                    selector.register(replacement.results, selectors.EVENT_READ, replacement)
                    feed(replacement)
            if not self.workers:
                break
        while pending:  # only reached if workers kept dying
            task = pending.pop()
            yield Result.failed(task.student_id, task.assignment, 0.0,
                                "no grader worker left", grader_error=True)

    def close(self) -> None:
        """Stop the workers (end of input; stragglers are killed)."""
        for worker in self.workers:
            worker.close()
