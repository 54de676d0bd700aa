"""The main side of the grading workers: warm processes (torch imported once, see
:mod:`~mlmcourse.grading.workers.worker`) that each own a zygote and a job slot. A fork server
is a fresh interpreter, so it never held the main process's memory or environment. A thread
of the main process keeps every worker holding ``QUEUED`` tasks. A worker that dies is replaced
(by a fork server of its own): the submission it was grading is ``failed`` with the reason, the
rest of its queue goes to the others. A worker whose zygote is gone retires the same way, failing
nothing. Only the main process writes files of record and the gradebook.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from mlmcourse.grading.config import QUEUED, WORKER_REPLACEMENTS_PER_JOB
from mlmcourse.grading.model import Graded, Result, Task
from mlmcourse.grading.sandbox.policy import Policy, worker_environment
from mlmcourse.grading.workers.worker import RETIRE


class Worker:
    """One worker (a child of a fork server) and the pipes to and from it."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.task_r, task_w = os.pipe()
        results_r, self.results_w = os.pipe()
        self.tasks = os.fdopen(task_w, "w")
        self.results = results_r
        self.pending = bytearray()
        self.queued: collections.deque[Task] = collections.deque()
        """Tasks sent and not reported yet, in the order the worker grades them."""
        self.pid: int | None = None
        self.retiring = False

    def lines(self) -> list[str] | None:
        """The complete lines that have arrived (``None`` once the worker is gone)."""
        chunk = os.read(self.results, 1 << 20)
        if not chunk:
            return None
        self.pending += chunk
        *complete, rest = self.pending.split(b"\n")
        self.pending = bytearray(rest)
        return [line.decode() for line in complete]

    def send(self, task: Task) -> None:
        """Queue ``task`` for the worker (a worker that has just ended leaves it queued: it
        goes to another one when its end is read)."""
        self.queued.append(task)
        try:
            self.tasks.write(json.dumps(task.to_json()) + "\n")
            self.tasks.flush()
        except BrokenPipeError:
            pass

    def kill(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stop the worker and close its pipes."""
        self.kill()
        try:
            self.tasks.close()
        except OSError:
            pass
        os.close(self.results)


def launch(workers: list[Worker], warm_modules: list[str], workroot: Path,
           policy: Policy | None) -> subprocess.Popen:
    """Start a fork server for ``workers`` (a fresh interpreter with the fixed environment),
    sending it the run's ``policy`` once."""
    code = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
            "from mlmcourse.grading.workers.worker import _serve; _serve()")
    fds = [(w.slot, w.task_r, w.results_w) for w in workers]
    server = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(sys.path), json.dumps(warm_modules),
         json.dumps(fds), json.dumps(policy.to_plain() if policy is not None else None)],
        stdin=subprocess.DEVNULL, pass_fds=[fd for _, *pair in fds for fd in pair],
        env=worker_environment(workroot), cwd=workroot)
    for worker in workers:
        os.close(worker.task_r)
        os.close(worker.results_w)
    return server


class ResultStream(Iterator[Graded]):
    """The results of :meth:`WorkerPool.run` in completion order: iterate over them one by one,
    or :meth:`take` all those that have arrived (so that their caller can store them
    together)."""

    def __init__(self, results: queue.SimpleQueue) -> None:
        self.results = results
        self.ended = False

    def __next__(self) -> Graded:
        if self.ended:
            raise StopIteration
        item = self.results.get()
        if item is None:
            self.ended = True
            raise StopIteration
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        return item

    def take(self, most: int) -> list[Graded]:
        """The next result (waiting for it) and up to ``most - 1`` more that have already
        arrived; an empty list once every result was taken."""
        taken = list(itertools.islice(self, 1))
        while taken and len(taken) < most and not self.results.empty():
            taken.extend(itertools.islice(self, 1))
        return taken


class WorkerPool:
    """N worker processes, kept busy by a thread of their own: each holds ``QUEUED`` tasks, and
    one that dies is replaced."""

    def __init__(self, jobs: int, warm_modules: list[str], workroot: Path,
                 policy: Policy | None) -> None:
        self.warm_modules, self.workroot, self.policy = warm_modules, workroot, policy
        self.workers = [Worker(slot) for slot in range(jobs)]
        self.servers = [launch(self.workers, warm_modules, workroot, policy)]
        self.replacements_left = WORKER_REPLACEMENTS_PER_JOB * (jobs + 1)
        self.closing = False
        self.thread: threading.Thread | None = None

    def run(self, tasks: list[Task]) -> ResultStream:
        """Hand the first tasks to the workers now; a thread hands out the rest as results
        arrive, whatever the caller is doing meanwhile (importing, recording). The stream
        returned yields one result per task, in completion order."""
        pending = list(reversed(tasks))
        selector = selectors.DefaultSelector()
        for worker in self.workers:
            selector.register(worker.results, selectors.EVENT_READ, worker)
            self._feed(worker, pending)
        results: queue.SimpleQueue[Graded | BaseException | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, args=(selector, pending, results),
                                       name="grading-pool", daemon=True)
        self.thread.start()
        return ResultStream(results)

    def _serve(self, selector: selectors.BaseSelector, pending: list[Task],
               results: queue.SimpleQueue) -> None:
        try:
            for result in self._results(selector, pending):
                results.put(result)
        except BaseException as exc:  # handed to the caller's thread
            results.put(exc)
        finally:
            results.put(None)

    @staticmethod
    def _feed(worker: Worker, pending: list[Task]) -> None:
        """Keep ``QUEUED`` tasks in the worker's pipe, so that it starts the next one at once."""
        while pending and len(worker.queued) < QUEUED and not worker.retiring:
            worker.send(pending.pop())

    def _results(self, selector: selectors.BaseSelector, pending: list[Task]
                 ) -> Iterator[Graded]:
        while any(w.queued for w in self.workers) and not self.closing:
            for key, _ in selector.select(timeout=1.0):
                worker: Worker = key.data
                lines = worker.lines()
                if lines is not None:
                    for line in lines:
                        if worker.pid is None:  # a worker's first line is its pid
                            worker.pid = int(line)
                        elif line == RETIRE:
                            worker.retiring = True
                        else:
                            worker.queued.popleft()
                            self._feed(worker, pending)
                            yield Graded.from_json(json.loads(line))
                    continue
                selector.unregister(worker.results)
                if self.closing:
                    return
                if worker.queued and not worker.retiring:  # it died grading the first
                    task = worker.queued.popleft()
                    yield Graded(Result.failed(task.student_id, task.assignment, 0.0,
                                               "the grader's worker died while grading this "
                                               "submission"))
                pending.extend(reversed(worker.queued))  # not started: another worker's
                worker.close()
                self.workers.remove(worker)
                if worker.retiring or self.replacements_left > 0:
                    if not worker.retiring:
                        self.replacements_left -= 1
                    replacement = Worker(worker.slot)
                    self.servers.append(launch([replacement], self.warm_modules,
                                               self.workroot, self.policy))
                    self.workers.append(replacement)
                    selector.register(replacement.results, selectors.EVENT_READ, replacement)
                for alive in self.workers:
                    self._feed(alive, pending)
            if not self.workers:
                break
        while pending and not self.closing:  # only reached if workers kept dying
            task = pending.pop()
            yield Graded(Result.failed(task.student_id, task.assignment, 0.0,
                                       "no grader worker left"))

    def close(self) -> None:
        """Stop the workers, their fork servers and the thread (again: nothing to do)."""
        self.closing = True
        for worker in list(self.workers):
            worker.kill()
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None
        for worker in self.workers:
            worker.close()
        for server in self.servers:
            server.kill()
            server.wait()
        self.workers, self.servers = [], []
