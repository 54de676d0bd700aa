"""The cluster's Dask scheduler: mutual TLS only (every connection must present a certificate
of the cluster's CA, see :mod:`.certs`), or, for tests, plain TCP on a loopback address
(:mod:`.address`). Dask's HTTP server (dashboard, metrics, health),
which has no authentication, serves nothing and listens on loopback only."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PORT = 8786
NO_HTTP = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
"""Dask's configuration that leaves its unauthenticated HTTP servers without any route."""
QUIET = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
         "distributed.admin.system-monitor.interval": "5s"}
"""Dask's diagnostics for its dashboard, which serves nothing here: no profile of every thread
every 10 ms, the event loop's tick and the system's sample every 1 s and 5 s (not 20 ms and
500 ms). Together they took 5.5% of a core in an idle worker and 2.8% in an idle scheduler,
taken from the sandboxes grading beside them (1.2% and 0.6% with these)."""
SETTINGS = {**NO_HTTP, **QUIET}
"""The Dask configuration of ``mlmcourse cluster scheduler`` and ``worker``."""
LOOPBACK_HTTP = "127.0.0.1:0"


async def serve(certs: Path | None, host: str, port: int) -> None:
    """Run the scheduler on ``tls://host:port`` until it is stopped; without ``certs``, on
    ``tcp://host:port`` (only for a loopback ``host``: see :mod:`.address`)."""
    import dask
    from distributed import Scheduler

    from mlmcourse.grading.cluster.address import check_address, security

    protocol = "tls" if certs is not None else "tcp"
    address = f"{protocol}://{host}:{port}"
    check_address(address, insecure_loopback=certs is None)
    with dask.config.set(SETTINGS):
        async with Scheduler(host=host, port=port, protocol=protocol,
                             security=security(address, certs, "scheduler"), dashboard=False,
                             dashboard_address=LOOPBACK_HTTP) as scheduler:
            print(f"mlmcourse cluster scheduler: listening on {scheduler.address}", flush=True)
            await scheduler.finished()
