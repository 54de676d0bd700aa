"""The worker side of grading: a fork server (a fresh interpreter started with the fixed
environment of :func:`~mlmcourse.grading.sandbox.policy.worker_environment`, holding the run's
policy) imports torch, NumPy, IPython and mlmcourse once, uses one thread, and forks one worker
per job slot. Each worker forks its zygote *before* reading any task, then grades the tasks it
reads from its pipe (JSON lines) and writes results as JSON lines. The main side is
:mod:`~mlmcourse.grading.workers.pool`.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from mlmcourse.grading.model import Graded, Result, Task
from mlmcourse.grading.sandbox.policy import Policy

RETIRE = "retire"
"""A worker's last line when its zygote is gone: its queued tasks go to a new worker."""


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _warm(warm_modules: list[str]) -> None:
    """Imports shared by every worker and sandbox (done once, before the workers are forked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numpy  # noqa: F401
    import torch

    import mlmcourse.checks
    import mlmcourse.grading.grade.trusted
    import mlmcourse.grading.sandbox.zygote  # noqa: F401
    from mlmcourse.vocab import Vocabulary

    torch.set_num_threads(1)
    Vocabulary.from_corpus()  # the shipped corpus, counted once for every sandbox to inherit
    for name in warm_modules:
        try:
            importlib.import_module(name)
        except Exception:  # the setup cell will report it in the sandbox
            pass


def worker_main(slot: int, tasks_fd: int, results_fd: int, policy: Policy | None) -> None:
    """Body of the worker of job slot ``slot``: it forks its zygote (with the run's ``policy``
    for this slot) before reading any task, then grades the tasks it reads (JSON lines) and
    writes results (JSON lines)."""
    from mlmcourse.grading.grade import trusted
    from mlmcourse.grading.sandbox.host import Zygote

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    results = os.fdopen(results_fd, "w", buffering=1)
    results.write(f"{os.getpid()}\n")
    zygote = Zygote(policy.for_slot(slot) if policy is not None else None)
    assignments: dict[str, trusted.TrustedAssignment] = {}
    for line in os.fdopen(tasks_fd, "r"):
        if not zygote.alive():  # only a fresh worker may fork a new one (it holds no secret)
            results.write(f"{RETIRE}\n")
            break
        task = Task.from_json(json.loads(line))
        try:
            source = Path(task.source)
            key = f"{source}:{source.stat().st_mtime_ns}"
            if key not in assignments:
                assignments[key] = trusted.load_trusted(source)
            graded = trusted.grade(task, assignments[key], zygote)
        except Exception as exc:  # a grader bug must not stop the class
            graded = Graded(Result.failed(task.student_id, task.assignment, 0.0,
                                          f"grader error: {type(exc).__name__}: {exc}"[:600]))
        results.write(json.dumps(graded.to_json()) + "\n")
    zygote.close()


def _serve() -> None:
    """The fork server: one fresh interpreter imports everything once, then forks a worker per
    slot (they share the imported pages) and waits for them."""
    from mlmcourse.grading.sandbox import linux

    linux.prctl(linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    _warm(json.loads(sys.argv[2]))
    slots = json.loads(sys.argv[3])
    plain = json.loads(sys.argv[4])
    policy = Policy.from_plain(plain) if plain is not None else None
    for slot, tasks_fd, results_fd in slots:
        if os.fork() == 0:
            for _, other_tasks, other_results in slots:
                if other_tasks != tasks_fd:
                    os.close(other_tasks)
                    os.close(other_results)
            try:
                worker_main(slot, tasks_fd, results_fd, policy)
            finally:
                os._exit(0)
    for _, tasks_fd, results_fd in slots:
        os.close(tasks_fd)
        os.close(results_fd)
    try:
        while True:
            os.wait()
    except ChildProcessError:
        pass


