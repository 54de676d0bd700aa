"""The cluster's Dask scheduler: mutual TLS only (every connection must present a certificate
of the cluster's CA, see :mod:`.certs`), or, for tests, plain TCP on a loopback address
(:mod:`.address`). Dask's HTTP server (dashboard, metrics, health),
which has no authentication, serves nothing and listens on loopback only."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PORT = 8786
NO_HTTP = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
"""Dask's configuration that leaves its unauthenticated HTTP servers without any route."""
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
    with dask.config.set(NO_HTTP):
        async with Scheduler(host=host, port=port, protocol=protocol,
                             security=security(address, certs, "scheduler"), dashboard=False,
                             dashboard_address=LOOPBACK_HTTP) as scheduler:
            print(f"mlmcourse cluster scheduler: listening on {scheduler.address}", flush=True)
            await scheduler.finished()
