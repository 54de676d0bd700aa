"""Grade beyond one machine: a Dask cluster behind mutual TLS whose workers host mlmcourse's
sandboxed grading slots. "certs DIR" writes a new CA and the roles' certificates; "scheduler
--certs DIR" runs the scheduler (mutual TLS only); "worker tls://H:P --certs DIR" runs a worker
with N sandboxed slots (as root, with cgroups: a worker that cannot sandbox joins but grades
nothing, and the client says why). Then: mlmcourse grade A SUBS --out OUT --cluster tls://H:P
--certs DIR.

Whoever holds client.pem can run any code as root on every worker: keep it on the instructor's
machine only; worker.pem goes to the grading machines, scheduler.pem to the scheduler's, ca.pem
to all three. For tests only, --insecure-loopback runs the scheduler and workers on plain
tcp://127.0.0.1 without certificates (then any user of the machine can run code as root).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from mlmcourse.grading.cluster.address import INSECURE_FLAG
from mlmcourse.grading.cluster.scheduler import DEFAULT_PORT
from mlmcourse.grading.config import DEFAULT_JOBS, DEFAULT_TIMEOUT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlmcourse cluster``: one sub-command per role."""
    sub = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    certs = sub.add_parser("certs", help="write a new CA and the scheduler's, workers' and "
                           "client's certificates (mode 0600)")
    certs.add_argument("folder", type=Path, metavar="DIR")
    scheduler = sub.add_parser("scheduler", help="run the Dask scheduler (mutual TLS only)")
    scheduler.add_argument("--certs", type=Path, metavar="DIR",
                           help="the folder holding ca.pem and scheduler.pem")
    scheduler.add_argument("--host", default="127.0.0.1", metavar="H",
                           help="address to listen on (default: 127.0.0.1)")
    scheduler.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P",
                           help=f"port (default: {DEFAULT_PORT})")
    worker = sub.add_parser("worker", help="run a Dask worker hosting sandboxed grading slots "
                            "(needs root and cgroups, as a local run)")
    worker.add_argument("address", metavar="tls://H:P", help="the scheduler")
    worker.add_argument("--certs", type=Path, metavar="DIR",
                        help="the folder holding ca.pem and worker.pem")
    worker.add_argument("--slots", "--nthreads", type=int, default=DEFAULT_JOBS, metavar="N",
                        help="submissions graded at once (default: number of CPUs)")
    worker.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="the runs' --timeout (the sandboxes' CPU limit follows from it; "
                        f"default: {DEFAULT_TIMEOUT:g})")
    jobqueue = worker.add_argument_group(
        "what dask-jobqueue passes to the worker command it starts "
        "(worker_command=\"mlmcourse.cli cluster worker\")")
    jobqueue.add_argument("--name", default=None, help="the worker's name at the scheduler")
    jobqueue.add_argument("--memory-limit", default="auto", metavar="BYTES",
                          help="Dask's memory limit of the worker process, e.g. 16GiB (each "
                          "sandbox has its own limit besides)")
    jobqueue.add_argument("--death-timeout", type=float, default=None, metavar="SECONDS",
                          help="stop if the scheduler cannot be reached for this long")
    jobqueue.add_argument("--protocol", choices=("tls", "tcp"), default=None,
                          help="must be the address's")
    jobqueue.add_argument("--tls-ca-file", type=Path, default=None, metavar="FILE",
                          help="the cluster's ca.pem (instead of --certs)")
    jobqueue.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                          help="the worker's certificate, worker.pem")
    jobqueue.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                          help="the worker's key (worker.pem holds both)")
    for role in (scheduler, worker):
        role.add_argument(INSECURE_FLAG, action="store_true",
                          help="for tests only: plain tcp:// on a loopback address, without "
                          "certificates (any user of this machine could then run code as root "
                          "on the workers)")


def run(args: argparse.Namespace) -> int:
    """Run the role; returns the exit code."""
    from mlmcourse.grading.cluster import address, certs, scheduler, worker

    try:
        if args.role == "certs":
            for path in certs.write_certificates(args.folder):
                print(path)
            return 0
        files = (args.tls_ca_file, args.tls_cert, args.tls_key) if args.role == "worker" else ()
        ways = (args.certs is not None, any(files), args.insecure_loopback)
        if sum(ways) != 1 or any(files) and not all(files):
            print(f"mlmcourse cluster {args.role}: error: pass either --certs DIR (mutual TLS), "
                  "--tls-ca-file, --tls-cert and --tls-key together (the same, as dask-jobqueue "
                  f"names them) or, for tests only, {INSECURE_FLAG}", file=sys.stderr)
            return 2
        if args.role == "scheduler":
            asyncio.run(scheduler.serve(args.certs, args.host, args.port))
            return 0
        address.check_address(args.address, args.insecure_loopback)
        if args.protocol is not None and not args.address.startswith(f"{args.protocol}://"):
            raise address.AddressRefused(f"{args.address}: not a {args.protocol}:// address "
                                         f"(--protocol {args.protocol})")
        security = (certs.security_of_files(*files, "worker") if any(files)
                    else address.security(args.address, args.certs, "worker"))
        from mlmcourse.grading.sandbox.policy import UID_BLOCK

        if not 1 <= args.slots <= UID_BLOCK or not args.timeout > 0:
            print(f"mlmcourse cluster worker: error: --slots must be between 1 and {UID_BLOCK}, "
                  "--timeout positive", file=sys.stderr)
            return 2
        options = {"name": args.name, "memory_limit": args.memory_limit,
                   "death_timeout": args.death_timeout}
        asyncio.run(worker.serve(args.address, security, args.slots, args.timeout, options))
        return 0
    except (certs.CertificatesMissing, address.AddressRefused, OSError) as exc:
        print(f"mlmcourse cluster {args.role}: error: {exc}", file=sys.stderr)
        return 2
