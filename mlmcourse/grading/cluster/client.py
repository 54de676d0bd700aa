"""The instructor's side of a cluster run: the same interface as the local
:class:`~mlmcourse.grading.workers.pool.WorkerPool` (``run(tasks)`` gives a
:class:`~mlmcourse.grading.workers.pool.ResultStream`, ``close()``), but each task goes to a
Dask worker with the submission's files as bytes, and comes back as JSON. Nothing here needs
root or cgroups.

No result or error a worker sends is unpickled here: the client accepts data only in Dask's
msgpack form (a result is a JSON string), and a task that raised on a worker is failed without
loading the exception the worker pickled (:mod:`.plain`).
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

from mlmcourse.grading.cluster.address import AddressRefused, check_address, security
from mlmcourse.grading.model import Graded, Result, Task
from mlmcourse.grading.workers.pool import ResultStream

RESENDS = 3
"""How many times a task the scheduler dropped is sent again before its student is failed."""
CONNECT_SECONDS = 60.0
"""How long the client waits for the scheduler and for a worker that serves."""


class ClusterUnavailable(Exception):
    """The cluster cannot grade this class (the message says why)."""


class ClusterLost(Exception):
    """The scheduler went away during the run (exit code 2): the results recorded so far are
    kept, and the same command grades the rest."""


def _failed(task: Task, exc: BaseException) -> Graded:
    """The task's student, failed for the cluster's problem (graded again by the next run)."""
    return Graded(Result.failed(task.student_id, task.assignment, 0.0,
                                f"the cluster could not grade this submission: "
                                f"{type(exc).__name__}: {exc}"[:600]))


class ClusterPool:
    """The workers of the Dask cluster at ``address``, reached with ``certs``'s client
    certificate; ``source`` is the assignment's source notebook (sent once per worker),
    ``say`` reports the workers that refused to serve; ``insecure_loopback`` accepts a plain
    ``tcp://`` loopback address (tests)."""

    def __init__(self, address: str, certs: Path | None, source: Path, source_sha: str,
                 say=print, insecure_loopback: bool = False) -> None:
        from mlmcourse.grading.cluster.certs import CertificatesMissing
        from mlmcourse.grading.cluster.plain import DESERIALIZERS, PlainClient
        from mlmcourse.grading.cluster.worker import worker_status

        self.address = address
        try:
            check_address(address, insecure_loopback)
            self.client = PlainClient(address, security=security(address, certs, "client"),
                                      timeout=CONNECT_SECONDS, set_as_default=False,
                                      deserializers=DESERIALIZERS)
        except (AddressRefused, CertificatesMissing) as exc:
            raise ClusterUnavailable(f"--cluster {exc}") from None
        except OSError as exc:
            raise ClusterUnavailable(f"cannot reach the scheduler {address}: {exc}") from None
        try:
            self.client.wait_for_workers(1, timeout=CONNECT_SECONDS)
            statuses = self.client.run(worker_status)
        except Exception as exc:
            self.client.close()
            raise ClusterUnavailable(f"no worker of {address} answered: {exc}") from None
        for worker, status in sorted(statuses.items()):
            if status["refused"]:
                say(f"warning: the worker {worker} refused to grade: {status['refused']}")
        if not any(s["slots"] for s in statuses.values()):
            self.client.close()
            raise ClusterUnavailable(f"no worker of {address} may grade (every one refused)")
        self.raw_source = source.read_bytes()
        self.source = self.client.scatter(self.raw_source, broadcast=True, hash=False)
        self.source_sha = source_sha
        self.thread: threading.Thread | None = None
        self.closing = False

    def _submit(self, task: Task, priority: int, key: str) -> object:
        """Send ``task`` to the cluster: the submission's files as bytes, the source once."""
        from mlmcourse.grading.cluster.worker import SLOT, grade_submission

        notebook = Path(task.notebook).read_bytes() if task.notebook else None
        files = [(name, Path(path).read_bytes()) for path, name in task.files]
        return self.client.submit(grade_submission, task.to_json(), notebook, files,
                                  self.source, self.source_sha, pure=False,
                                  resources={SLOT: 1}, priority=priority, key=key)

    def run(self, tasks: list[Task]) -> ResultStream:
        """Send every task (the first one, the source solution, before the others); a thread
        hands the results over in completion order."""
        from concurrent.futures import CancelledError

        from distributed import as_completed

        futures = {}
        for rank, task in enumerate(tasks):
            futures[self._submit(task, len(tasks) - rank, f"grade-{rank}-{task.student_id}")
                    ] = task
        results: queue.SimpleQueue = queue.SimpleQueue()

        def serve() -> None:
            resent: dict[str, int] = {}
            try:
                finished = as_completed(futures, loop=self.client.loop)
                for future in finished:
                    if self.closing:
                        return
                    task = futures.pop(future)
                    try:
                        text = future.result()
                        results.put(Graded.from_json(json.loads(text)))
                    except CancelledError as exc:
                        if getattr(exc, "reason", "") == "scheduler-connection-lost":
                            raise ClusterLost(f"the scheduler {self.address} went away"
                                              ) from None
                        # the scheduler dropped the task (e.g. the source's copy was lost
                        # with a worker): sent again, at most RESENDS times
                        count = resent[task.student_id] = resent.get(task.student_id, 0) + 1
                        if count > RESENDS:
                            results.put(_failed(task, exc))
                            continue
                        if self.source.status != "finished":
                            self.source = self.client.scatter(self.raw_source, broadcast=True,
                                                              hash=False)
                        again = self._submit(task, 0, f"{future.key}-again{count}")
                        futures[again] = task
                        finished.add(again)
                    except Exception as exc:
                        results.put(_failed(task, exc))
            except BaseException as exc:
                results.put(exc)
            finally:
                results.put(None)

        self.thread = threading.Thread(target=serve, name="grading-cluster", daemon=True)
        self.thread.start()
        return ResultStream(results)

    def close(self) -> None:
        """Cancel what is left and leave the cluster (again: nothing to do)."""
        if self.closing:
            return
        self.closing = True
        self.client.close()
