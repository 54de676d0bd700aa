"""The cluster's certificates: a new CA (``ca.pem``) and a certificate with its key for each
role (``scheduler.pem``, ``worker.pem``, ``client.pem``), every file mode 0600. The CA's key is
used once and never written: a new certificate means a new CA (run ``mlmcourse cluster certs``
again and hand out every file anew).

Whoever holds ``client.pem`` can run any code as root on every worker: give it only to the
instructor's machine. ``worker.pem`` goes to the grading machines, ``scheduler.pem`` to the
scheduler's; ``ca.pem`` to all three.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

ROLES = ("scheduler", "worker", "client")
VALID_DAYS = 365


def _name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlmcourse cluster"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file that only its owner may read (mode 0600 from the start)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_certificates(folder: Path) -> list[Path]:
    """Write a new CA and the three roles' certificates into ``folder`` (made mode 0700 if
    missing); returns the files written. Every certificate names ``localhost``, 127.0.0.1 and
    this machine's host name, and may serve and connect (Dask's workers do both)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("mlmcourse cluster CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    written = [folder / "ca.pem"]
    _write_private(written[0], ca.public_bytes(serialization.Encoding.PEM))
    names = x509.SubjectAlternativeName([
        x509.DNSName("localhost"), x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(f"mlmcourse {role}"))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(names, critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        written.append(folder / f"{role}.pem")
        _write_private(written[-1], pem)
    return written


class CertificatesMissing(Exception):
    """The certificates folder lacks a file a role needs (the message names it)."""


def security(folder: Path, role: str):
    """Dask's :class:`~distributed.security.Security` of ``role``: mutual TLS only, with the CA
    and the role's certificate of ``folder``."""
    for path in (folder / "ca.pem", folder / f"{role}.pem"):
        if not path.is_file():
            raise CertificatesMissing(f"{path} does not exist: make the certificates with "
                                      f"mlmcourse cluster certs {folder}")
    return security_of_files(folder / "ca.pem", folder / f"{role}.pem", folder / f"{role}.pem",
                             role)


def security_of_files(ca: Path, cert: Path, key: Path, role: str):
    """:func:`security` from the files themselves (as dask-jobqueue names them to a worker:
    ``--tls-ca-file``, ``--tls-cert``, ``--tls-key``)."""
    from distributed.security import Security

    for path in (ca, cert, key):
        if not path.is_file():
            raise CertificatesMissing(f"{path} does not exist")
    return Security(require_encryption=True, tls_ca_file=str(ca),
                    **{f"tls_{role}_cert": str(cert), f"tls_{role}_key": str(key)})
