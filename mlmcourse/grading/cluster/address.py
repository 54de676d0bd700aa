"""Which scheduler addresses the cluster's commands accept: ``tls://HOST:PORT`` (mutual TLS with
the certificates of ``mlmcourse cluster certs``), and nothing else, except a plain
``tcp://`` address whose host is a loopback IP literal (127.0.0.0/8, ::1) when the command is
given ``--insecure-loopback``, a flag meant for tests: without TLS any user of the machine who
reaches the port can run code as the workers' user, root."""

from __future__ import annotations

import ipaddress
from pathlib import Path

INSECURE_FLAG = "--insecure-loopback"


class AddressRefused(Exception):
    """The address is not one the cluster may be reached at (the message says why)."""


def loopback(host: str) -> bool:
    """Whether ``host`` is an IP literal of the loopback network (a name is never trusted to
    resolve there)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(address: str, insecure_loopback: bool = False) -> None:
    """Refuse ``address`` unless it is ``tls://``, or ``tcp://`` on loopback with the flag."""
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise AddressRefused(f"{address}: not an address of the form tls://HOST:PORT")
    if scheme == "tls":
        return
    if scheme == "tcp" and insecure_loopback and loopback(host):
        return
    if scheme == "tcp" and insecure_loopback:
        raise AddressRefused(f"{address}: {INSECURE_FLAG} allows plain TCP only on a loopback "
                             "address (127.0.0.1 or [::1]); use tls://HOST:PORT")
    raise AddressRefused(f"{address}: the cluster is reached only over mutual TLS "
                         f"(tls://HOST:PORT; plain tcp:// only on loopback with {INSECURE_FLAG}, "
                         "for tests)")


def security(address: str, certs: Path | None, role: str):
    """Dask's :class:`~distributed.security.Security` for ``role`` at a checked ``address``:
    mutual TLS with ``certs`` for ``tls://``, none for a loopback ``tcp://``."""
    if not address.startswith("tls://"):
        return None
    from mlmcourse.grading.cluster.certs import CertificatesMissing, security

    if certs is None:
        raise CertificatesMissing(f"{address} needs the cluster's certificates: pass --certs DIR "
                                  "(made by mlmcourse cluster certs DIR)")
    return security(certs, role)
