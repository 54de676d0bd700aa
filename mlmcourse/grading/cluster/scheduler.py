"""The cluster's Dask scheduler: mutual TLS only (every connection must present a certificate
of the cluster's CA, see :mod:`.certs`). Dask's HTTP server (dashboard, metrics, health),
which has no authentication, serves nothing and listens on loopback only."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PORT = 8786
NO_HTTP = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
"""Dask's configuration that leaves its unauthenticated HTTP servers without any route."""
LOOPBACK_HTTP = "127.0.0.1:0"


async def serve(certs: Path, host: str, port: int) -> None:
    """Run the scheduler on ``tls://host:port`` until it is stopped."""
    import dask
    from distributed import Scheduler

    from mlmcourse.grading.cluster.certs import security

    with dask.config.set(NO_HTTP):
        async with Scheduler(host=host, port=port, protocol="tls",
                             security=security(certs, "scheduler"), dashboard=False,
                             dashboard_address=LOOPBACK_HTTP) as scheduler:
            print(f"mlmcourse cluster scheduler: listening on {scheduler.address}", flush=True)
            await scheduler.finished()
