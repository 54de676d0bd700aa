"""The cluster's Dask scheduler: mutual TLS only (every connection must present a certificate
of the cluster's CA, see :mod:`.certs`)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PORT = 8786


async def serve(certs: Path, host: str, port: int) -> None:
    """Run the scheduler on ``tls://host:port`` until it is stopped."""
    from distributed import Scheduler

    from mlmcourse.grading.cluster.certs import security

    async with Scheduler(host=host, port=port, protocol="tls",
                         security=security(certs, "scheduler"), dashboard=False) as scheduler:
        print(f"mlmcourse cluster scheduler: listening on {scheduler.address}", flush=True)
        await scheduler.finished()
