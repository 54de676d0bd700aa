"""A Dask worker that hosts N of the local grader's warm, sandboxed grading slots (the same fork
server, zygotes and policy as ``mlmcourse grade`` on one machine, see
:mod:`~mlmcourse.grading.workers.worker`).

The machine is checked before the worker joins (root, the system call filter, uids, cgroups v1
or v2: :func:`~mlmcourse.grading.pipeline.sandbox_policy`). A worker that fails the check still
joins, so that the client can name it and say why, but offers no grading slot (the Dask
resource :data:`SLOT`), so the scheduler never gives it a submission.

Only plain data crosses the network: a task brings the submission's files as bytes and the
assignment's source (sent once per worker, checked against its SHA-256), and returns the
result as a JSON string, also when it fails (a task never raises).
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import tempfile
import threading
from pathlib import Path

from distributed import WorkerPlugin

from mlmcourse.grading.model import Graded, Result, Task

SLOT = "mlmcourse-slot"
"""The Dask resource a grading task needs: one per warm sandboxed slot of a worker."""
PLUGIN = "mlmcourse-slots"


class Slots(WorkerPlugin):
    """The warm grading slots of this worker (a Dask worker plugin: ``get_worker().plugins``),
    or why it refused to host any (``refused``)."""

    name = PLUGIN

    def __init__(self, count: int, timeout: float) -> None:
        from mlmcourse.grading.pipeline import GradingRefused, sandbox_policy

        self.count, self.refused = count, ""
        self.workroot = Path(tempfile.mkdtemp(prefix="mlmcourse-cluster-"))
        self.sources: dict[str, Path] = {}
        self.lock = threading.Lock()
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        self.servers: list = []
        try:
            self.policy, self.uid_lock = sandbox_policy(timeout)
        except GradingRefused as exc:
            self.policy, self.uid_lock, self.refused = None, None, str(exc)
            return
        self.limits = vars(self.policy.limits)
        for slot in range(count):
            self._start(slot)

    def _start(self, slot: int) -> None:
        """Start a fork server holding a fresh worker for ``slot`` and offer it."""
        from mlmcourse.grading.workers.pool import Worker, launch

        worker = Worker(slot)
        self.servers.append(launch([worker], [], self.workroot, self.policy))
        self.free.put(worker)

    def status(self) -> dict:
        """What the client is told about this worker when it connects."""
        return {"refused": self.refused, "slots": 0 if self.refused else self.count}

    def source(self, raw: bytes, sha: str, name: str) -> Path:
        """The assignment's source notebook on this worker's disk, written once; refused if its
        bytes are not those of ``sha`` (a worker never grades against other tests)."""
        with self.lock:
            if sha not in self.sources:
                if hashlib.sha256(raw).hexdigest() != sha:
                    raise ValueError("the assignment's source does not match its hash")
                folder = self.workroot / "sources" / sha
                folder.mkdir(parents=True)
                (folder / f"{name}.ipynb").write_bytes(raw)
                self.sources[sha] = folder / f"{name}.ipynb"
            return self.sources[sha]

    def grade(self, task: Task) -> Graded:
        """Grade ``task`` on a free slot; a slot whose worker died or retired is replaced."""
        worker = self.free.get()
        try:
            worker.send(task)
            while True:
                lines = worker.lines()
                if lines is None:
                    worker.close()
                    self._start(worker.slot)
                    return Graded(Result.failed(task.student_id, task.assignment, 0.0,
                                                "the grader's worker died while grading this "
                                                "submission"))
                for line in lines:
                    if worker.pid is None:
                        worker.pid = int(line)
                    elif line == "retire":  # its zygote is gone: a fresh worker grades it
                        worker.close()
                        self._start(worker.slot)
                        return self.grade(task)
                    else:
                        worker.queued.popleft()
                        self.free.put(worker)
                        worker = None
                        return Graded.from_json(json.loads(line))
        except BaseException:
            if worker is not None:
                worker.close()
                self._start(worker.slot)
            raise

    def close(self) -> None:
        """Stop the slots; release the uids and cgroups; remove the work folder."""
        from mlmcourse.grading.pipeline import release_sandbox

        while not self.free.empty():
            self.free.get().close()
        for server in self.servers:
            server.kill()
            server.wait()
        if self.policy is not None:
            release_sandbox(self.policy, self.uid_lock)
        shutil.rmtree(self.workroot, ignore_errors=True)


def _slots() -> Slots:
    from distributed import get_worker

    return get_worker().plugins[PLUGIN]


def worker_status(dask_worker: object) -> dict:
    """This worker's :meth:`Slots.status` (run on every worker by the client's
    ``Client.run``, which passes ``dask_worker``)."""
    return dask_worker.plugins[PLUGIN].status()


def grade_submission(task: dict, notebook: bytes | None, files: list[tuple[str, bytes]],
                     source: bytes, source_sha: str) -> str:
    """Grade one submission on this worker: ``task`` is the client's
    :class:`~mlmcourse.grading.model.Task` as JSON (its paths are the client's), ``notebook``
    and ``files`` the submission's bytes, ``source`` the assignment's source notebook and
    ``source_sha`` its SHA-256. Returns the :class:`Graded` as JSON, a failed one when this
    worker cannot grade it (it never raises: the client loads no exception of a worker's)."""
    here = Task.from_json(task)
    try:
        return json.dumps(_grade_here(here, notebook, files, source, source_sha).to_json())
    except Exception as exc:
        return json.dumps(Graded(Result.failed(
            here.student_id, here.assignment, 0.0,
            f"the cluster's worker could not grade this submission: {type(exc).__name__}: "
            f"{exc}"[:600])).to_json())


def _grade_here(here: Task, notebook: bytes | None, files: list[tuple[str, bytes]],
                source: bytes, source_sha: str) -> Graded:
    """:func:`grade_submission` on this worker's slots, with its files in a scratch folder."""
    slots = _slots()
    if slots.refused:
        raise RuntimeError(f"this worker refused to grade: {slots.refused}")
    if here.settings.get("limits") != slots.limits:
        return Graded(Result.failed(
            here.student_id, here.assignment, 0.0,
            f"the worker's sandbox limits {slots.limits} are not the run's "
            f"{here.settings.get('limits')}: start the workers with the run's --timeout"))
    source_path = slots.source(source, source_sha, Path(here.source).stem)
    folder = Path(tempfile.mkdtemp(dir=slots.workroot))
    try:
        copies = []
        for index, (name, raw) in enumerate(files):
            copy = folder / f"file{index}"
            copy.write_bytes(raw)
            copies.append((str(copy), name))
        submitted = None
        if notebook is not None:
            submitted = folder / "submission.ipynb"
            submitted.write_bytes(notebook)
        here.source, here.workroot = str(source_path), str(slots.workroot)
        here.notebook = str(submitted) if submitted is not None else None
        here.files = copies
        return slots.grade(here)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def serve(address: str, security: object, slots: int, timeout: float,
                options: dict | None = None) -> None:
    """Run the Dask worker until the scheduler goes away or it is stopped; ``security`` is its
    :class:`~distributed.security.Security` (``None`` for a loopback ``tcp://`` address), and
    ``options`` are further arguments of Dask's ``Worker`` (``name``, ``memory_limit``,
    ``death_timeout``, as dask-jobqueue gives them)."""
    import dask
    from distributed import Worker

    from mlmcourse.grading.cluster.scheduler import LOOPBACK_HTTP, SETTINGS

    plugin = Slots(slots, timeout)
    resources = {} if plugin.refused else {SLOT: slots}
    try:
        with dask.config.set(SETTINGS):
            async with Worker(address, security=security, nthreads=slots,
                              resources=resources, plugins=(plugin,), dashboard=False,
                              dashboard_address=LOOPBACK_HTTP, **(options or {})) as worker:
                await worker.finished()
    finally:
        plugin.close()
