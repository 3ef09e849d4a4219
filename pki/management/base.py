"""Shared behaviour of KMI's management commands: one-line errors, the CLI actor, lookups."""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pki.exceptions import NotFound, PKIError
from pki.issuance import CertificateOptions
from pki.models import Certificate, CertificateAuthority, CertificateRequest, Profile
from pki.x509.serials import normalize_serial


class PKICommand(BaseCommand):
    """A command whose domain errors become ``CommandError`` (exit 1, one line on stderr)."""

    # ``call_command(..., stdin=io.BytesIO(...))`` feeds ``--csr -`` in tests.
    stealth_options = ("stdin",)
    # Django's system checks (URL, admin and template checks) load every view module: they
    # belong to ``manage.py check``, ``migrate`` and the servers, not to each operator command,
    # whose start-up time they would double. KMI registers no checks of its own.
    requires_system_checks: list[str] = []

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except PKIError as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def actor() -> str:
        """The audit actor for commands: the operating-system user."""
        try:
            return f"cli:{getpass.getuser()}"
        except (KeyError, OSError):
            return "cli:unknown"

    def read_input(self, path: str, options: dict[str, Any], *, what: str = "file") -> bytes:
        """Return the bytes of ``path``, or of standard input when ``path`` is ``-``."""
        if path == "-":
            stream: IO[bytes] = options.get("stdin") or sys.stdin.buffer
            return stream.read()
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None

    def write_output(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (``-`` writes text to standard output)."""
        if path == "-":
            self.stdout.write(data.decode(), ending="")
            return
        try:
            Path(path).write_bytes(data)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None


def parse_instant(text: str) -> dt.datetime:
    """Parse an ISO 8601 time with a zone (``2026-05-01T10:00:00Z``)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2026-05-01T10:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or +hh:mm")
    return value


def add_certificate_options(parser: CommandParser) -> None:
    """The owner and auto-renewal options of a command that requests a certificate."""
    renew = parser.add_mutually_exclusive_group()
    renew.add_argument(
        "--auto-renew",
        action="store_true",
        default=None,
        help="KMI renews it by itself (default: the profile's)",
    )
    renew.add_argument(
        "--no-auto-renew", dest="auto_renew", action="store_false", help="it does not renew itself"
    )
    parser.add_argument("--renew-before-days", type=int, help="auto-renewal this many days before notAfter")
    parser.add_argument("--owner-email", default="", help="who hears about it (expiry, renewal)")
    parser.add_argument(
        "--owner-webhook", default="", help="signed webhook for its notices and its successor"
    )


def certificate_options(opts: dict[str, Any]) -> CertificateOptions:
    """The ``CertificateOptions`` of ``add_certificate_options``' arguments."""
    return CertificateOptions(
        auto_renew=opts.get("auto_renew"),
        renew_before_days=opts.get("renew_before_days"),
        owner_email=opts.get("owner_email") or "",
        owner_webhook_url=opts.get("owner_webhook") or "",
    ).check()


def get_ca(name: str) -> CertificateAuthority:
    """Return the CA called ``name`` or raise NotFound."""
    try:
        return CertificateAuthority.objects.select_related("key", "certificate", "parent").get(name=name)
    except CertificateAuthority.DoesNotExist:
        known = ", ".join(CertificateAuthority.objects.values_list("name", flat=True)) or "none"
        raise NotFound(f"no CA named {name!r} (known: {known})") from None


def get_profile(name: str) -> Profile:
    """Return the profile called ``name`` or raise NotFound."""
    try:
        return Profile.objects.get(name=name)
    except Profile.DoesNotExist:
        known = ", ".join(Profile.objects.values_list("name", flat=True))
        raise NotFound(f"no profile named {name!r} (known: {known})") from None


def get_certificate(serial: str, ca: str | None = None) -> Certificate:
    """Return the certificate with ``serial`` (``0A:1B``, ``0x0a1b`` or hex), within ``ca`` if named.

    Serials are unique per CA only: a serial two CAs issued needs ``ca`` to choose.
    """
    wanted = normalize_serial(serial)
    rows = Certificate.objects.select_related("ca", "profile", "key").filter(serial=wanted)
    if ca is not None:
        rows = rows.filter(ca=get_ca(ca))
    found = list(rows[:10])
    if not found:
        where = f" issued by CA {ca}" if ca is not None else ""
        raise NotFound(f"no certificate with serial {wanted}{where}")
    if len(found) > 1:
        names = ", ".join(sorted(c.ca.name for c in found if c.ca is not None))
        raise CommandError(f"serial {wanted} was issued by several CAs ({names}): choose one with --ca")
    return found[0]


def get_request(request_id: int | str) -> CertificateRequest:
    """Return the certificate request with id ``request_id`` or raise NotFound."""
    try:
        pk = int(request_id)
    except (TypeError, ValueError):
        raise NotFound(f"request id {request_id!r} is not a number") from None
    try:
        return CertificateRequest.objects.select_related("ca", "profile").get(pk=pk)
    except CertificateRequest.DoesNotExist:
        raise NotFound(f"no certificate request with id {pk}") from None


def certificate_files(paths: list[str]) -> list[Path]:
    """The files named, and the .pem/.crt/.cer files inside the folders named."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.suffix in {".pem", ".crt", ".cer"} and p.is_file()
            )
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    return files


def load_certificates(data: bytes, *, one: bool = False) -> list[x509.Certificate]:
    """Certificates from PEM (several) or DER (one); ``one`` insists on exactly one."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CommandError(f"not a certificate in PEM or DER: {exc}") from None
    if one and len(certs) != 1:
        raise CommandError(f"expected one certificate, found {len(certs)}")
    return certs


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data.strip())
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CommandError(f"not a CRL in PEM or DER: {exc}") from None


def pem_bundle(certs: Sequence[x509.Certificate]) -> bytes:
    """Concatenate certificates as PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def describe(cert: Certificate) -> str:
    """One line naming a certificate: serial, subject or first SAN, CA and notAfter."""
    name = cert.subject or (cert.san_text.splitlines() or ["(no name)"])[0]
    ca = cert.ca.name if cert.ca is not None else "?"
    return f"serial {cert.serial} ({name}) from CA {ca}, valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z"
