"""Shared fixtures. A test that needs something CI provides (the built book, chromium, npm)
calls ``unavailable(reason)``: it skips locally and fails when the ``CI`` variable is set."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's (`apt-get install -y chromium`)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen, seconds: float = 20.0) -> None:
    """End a server started in a session of its own (``start_new_session=True``) with all its
    children: SIGTERM to the group, SIGKILL if it is still there after ``seconds``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=seconds)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def unavailable() -> Callable[[str], None]:
    """``unavailable(reason)``: skip with ``reason`` locally, fail with it under CI."""
    return _unavailable


@pytest.fixture(scope="session")
def needs_root(unavailable: Callable[[str], None]) -> None:
    """For the sandbox's tests: root (namespaces, cgroups, a uid per submission) or, without it,
    a skip locally and a failure under CI."""
    if os.geteuid() != 0:
        unavailable("the sandbox needs root (namespaces, cgroups, a uid per submission)")


@pytest.fixture(scope="module")
def zygote_of(policy: object) -> Iterator[Callable[[object], object]]:
    """For the sandbox's tests (their module defines ``policy``): ``zygote_of(p)`` is the zygote
    of policy ``p``, made once (a zygote's sandboxes all follow the policy it was forked with);
    all are closed before the module's cgroups are removed."""
    from mlmcourse.grading.sandbox.host import Zygote

    made: dict[object, Zygote] = {}

    def get(wanted: object) -> Zygote:
        if wanted not in made:
            made[wanted] = Zygote(wanted)
        return made[wanted]

    yield get
    for zygote in made.values():
        zygote.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def serve() -> Iterator[Callable[[Path], str]]:
    """``serve(directory)`` serves a folder on 127.0.0.1 and returns its base URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")  # closed with its module: other modules drive their own
def browser(unavailable: Callable[[str], None]) -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres_url(unavailable: Callable[[str], None]) -> Iterator[str]:
    """The URL of an empty database on a PostgreSQL server of its own: Debian's ``postgresql``,
    a new cluster (``initdb``) in a scratch folder, run as the ``postgres`` user on a free port of
    127.0.0.1 (its socket in the scratch folder), stopped and deleted afterwards. No system
    cluster is touched."""
    import glob
    import pwd
    import shutil
    import socket
    import tempfile
    import time

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        unavailable("PostgreSQL is not installed (apt-get install -y postgresql)")
    if os.geteuid() != 0:
        unavailable("starting a PostgreSQL server as the postgres user needs root")
    try:
        import psycopg  # noqa: F401  (the driver the URL names)
    except ImportError:
        unavailable("psycopg is not installed (pip install 'mlmcourse[postgres]')")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("the postgres user does not exist (Debian's postgresql package makes it)")
    bin_dir = Path(found[-1]).parent
    # (not under pytest's own folder, which the postgres user may not enter)
    scratch = Path(tempfile.mkdtemp(prefix="mlmcourse-postgres-"))
    os.chown(scratch, owner.pw_uid, owner.pw_gid)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, bin_dir / "initdb", "-D", scratch / "data", "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(scratch / "server.log", "wb")  # closed below
    server = subprocess.Popen([*as_postgres, bin_dir / "postgres", "-D", scratch / "data",
                               "-h", "127.0.0.1", "-p", str(port), "-k", scratch,
                               "-c", "fsync=off"], stdout=log, stderr=log,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([bin_dir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)],
                             timeout=30).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the PostgreSQL server did not start: "
                            f"{(scratch / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        subprocess.run([*as_postgres, bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "gradebook"], check=True, capture_output=True,
                       timeout=60)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/gradebook"
    finally:
        stop_group(server)
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
