"""The client's Dask connection, which never unpickles what the cluster sends: data is accepted
only in Dask's msgpack form (:data:`DESERIALIZERS`), and a task's error only as the fact that it
raised (:class:`PlainClient`). A worker runs student code, sandboxed; if a sandbox were ever
escaped, a pickle from that worker would otherwise run code on the instructor's machine."""

from __future__ import annotations

from distributed import Client

DESERIALIZERS = ["msgpack"]
"""The only form in which the client accepts data from the cluster (never ``pickle``)."""


class WorkerRaised(Exception):
    """A task raised on its worker instead of returning a result (the worker's log says why)."""


class PlainClient(Client):
    """Dask's client, except that a task's error is never unpickled: whatever exception a
    worker reports, the task fails with :class:`WorkerRaised`."""

    def _handle_task_erred(self, key=None, exception=None, traceback=None) -> None:
        state = self.futures.get(key)
        if state is not None:
            state.set_error(WorkerRaised("the task raised on its worker instead of returning "
                                         "a result: see that worker's log"), None)
