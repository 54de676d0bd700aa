"""Grading workers: warm processes (torch imported once) that each own a zygote and a job slot.

Each worker is a fresh interpreter (``python -m mlmcourse.grading.pool SLOT``) that never held
the main process's memory. It imports torch/NumPy/IPython/mlmcourse, uses one thread, forks its
zygote *before* reading any task, then grades the tasks it reads from stdin (JSON lines) and
writes results as JSON lines to fd 3. Only the main process writes files of record and the
gradebook.
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

RESULT_FD = 3


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def worker_main(slot: int, warm_modules: list[str]) -> None:
    """Body of one worker process; ``warm_modules`` are imported before the zygote is forked,
    so every sandbox child starts with them loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numpy  # noqa: F401 - warm imports shared with every sandbox child
    import torch

    import mlmcourse.grading.misconceptions  # noqa: F401
    from mlmcourse.grading import executor
    from mlmcourse.grading.sandbox import Zygote

    torch.set_num_threads(1)
    for name in warm_modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the setup cell will report it in the sandbox
            pass
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    results = os.fdopen(RESULT_FD, "w", buffering=1)
    zygote = Zygote()
    trusted: dict[str, executor.TrustedAssignment] = {}
    for line in sys.stdin:
        task = json.loads(line)
        try:
            source = Path(task["source"])
            key = f"{source}:{source.stat().st_mtime_ns}"
            if key not in trusted:
                trusted[key] = executor.load_trusted(source)
            result = executor.grade(task, trusted[key], zygote, slot)
        except Exception as exc:  # noqa: BLE001 - a grader bug must not stop the class
            result = {"student_id": task["student_id"], "status": "failed",
                      "reason": f"grader error: {type(exc).__name__}: {exc}", "error": True}
        results.write(json.dumps(result) + "\n")
    zygote.close()


class WorkerPool:
    """N worker processes; each gets one task at a time."""

    def __init__(self, jobs: int, warm_modules: list[str]) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        self.workers: list[subprocess.Popen] = []
        self.readers: list = []
        for slot in range(jobs):
            read_fd, write_fd = os.pipe()
            worker = subprocess.Popen(
                [sys.executable, "-m", "mlmcourse.grading.pool", str(slot), str(write_fd),
                 json.dumps(warm_modules)],
                stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env, text=True,
            )
            os.close(write_fd)
            self.workers.append(worker)
            self.readers.append(os.fdopen(read_fd, "r"))

    def run(self, tasks: list[dict]) -> Iterator[dict]:
        """Yield one result per task, in completion order (a dead worker's task fails)."""
        pending = list(reversed(tasks))
        busy: dict[int, dict] = {}
        selector = selectors.DefaultSelector()
        for slot, reader in enumerate(self.readers):
            selector.register(reader, selectors.EVENT_READ, slot)

        def feed(slot: int) -> None:
            if pending:
                busy[slot] = pending.pop()
                self.workers[slot].stdin.write(json.dumps(busy[slot]) + "\n")
                self.workers[slot].stdin.flush()

        for slot in range(len(self.workers)):
            feed(slot)
        while busy:
            for key, _ in selector.select(timeout=1.0):
                slot = key.data
                line = key.fileobj.readline()
                task = busy.pop(slot, None)
                if not line:
                    selector.unregister(key.fileobj)
                    if task is not None:
                        code = self.workers[slot].wait()
                        yield {"student_id": task["student_id"], "status": "failed",
                               "error": True, "reason": f"grader worker crashed (exit code {code})"}
                    continue
                yield json.loads(line)
                feed(slot)
            if not selector.get_map() and busy:
                for task in busy.values():
                    yield {"student_id": task["student_id"], "status": "failed", "error": True,
                           "reason": "no grader worker left"}
                return
            if not selector.get_map():
                break
        while pending:  # only reached if every worker died
            task = pending.pop()
            yield {"student_id": task["student_id"], "status": "failed", "error": True,
                   "reason": "no grader worker left"}

    def close(self) -> None:
        """Stop the workers (end of input; stragglers are killed)."""
        for worker in self.workers:
            try:
                worker.stdin.close()
            except OSError:
                pass
        for worker, reader in zip(self.workers, self.readers, strict=True):
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            reader.close()


if __name__ == "__main__":
    if int(sys.argv[2]) != RESULT_FD:
        os.dup2(int(sys.argv[2]), RESULT_FD)
        os.close(int(sys.argv[2]))
    worker_main(int(sys.argv[1]), json.loads(sys.argv[3]))
