"""``show_cert SERIAL [--ca CA] [--pem]``: everything KMI knows about one certificate."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management.base import CommandParser

from pki.clock import utcnow
from pki.management.base import PKICommand, get_certificate
from pki.models import CertificateAuthority


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


class Command(PKICommand):
    help = "Show a certificate. SERIAL may be written 0A:1B…, 0x0a1b… or plain hex."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serial", help="serial number in hex")
        parser.add_argument("--ca", help="issuing CA (needed when two CAs issued the same serial)")
        parser.add_argument("--pem", action="store_true", help="also print the certificate as PEM")

    def handle(self, *args: Any, **opts: Any) -> None:
        cert = get_certificate(opts["serial"], ca=opts["ca"])
        c = cert.x509()
        now = utcnow()
        der = bytes(cert.der)
        lines = [
            ("serial", _colon_hex(c.serial_number.to_bytes((c.serial_number.bit_length() + 8) // 8, "big"))),
            ("subject", cert.subject or "(empty)"),
            ("SANs", ", ".join(cert.san_text.splitlines()) or "(none)"),
            ("issuer", c.issuer.rfc4514_string()),
            ("issuing CA", cert.ca.name if cert.ca is not None else "(unknown)"),
        ]
        own = CertificateAuthority.objects.filter(certificate=cert).first()
        if own is not None:
            lines.append(("certificate of CA", own.name))
        lines += [
            ("profile", cert.profile.name if cert.profile is not None else "(none: CA certificate)"),
            ("not before", f"{cert.not_before:%Y-%m-%d %H:%M:%S}Z"),
            ("not after", f"{cert.not_after:%Y-%m-%d %H:%M:%S}Z"),
            ("status", cert.status(now)),
        ]
        if cert.revoked_at is not None:
            revocation = f"{cert.revocation_reason} at {cert.revoked_at:%Y-%m-%d %H:%M:%S}Z"
            if cert.invalidity_date is not None:
                revocation += f" (invalid since {cert.invalidity_date:%Y-%m-%d %H:%M:%S}Z)"
            lines.append(("revocation", revocation))
        if cert.request_id is not None:
            lines.append(("request", str(cert.request_id)))
        if cert.renewed_from_id is not None and cert.renewed_from is not None:
            lines.append(("renewed from", cert.renewed_from.serial))
        renewals = ", ".join(cert.renewals.values_list("serial", flat=True))
        if renewals:
            lines.append(("renewed by", renewals))
        lines += [
            ("SHA-256", _colon_hex(hashlib.sha256(der).digest())),
            ("SHA-1", _colon_hex(hashlib.sha1(der).digest())),  # noqa: S324 - a display fingerprint
            ("key SHA-256 (SPKI)", cert.key_fingerprint),
        ]
        try:
            cdp = c.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            urls = [str(n.value) for dp in cdp for n in (dp.full_name or [])]
            lines.append(("CRL", ", ".join(urls)))
        except x509.ExtensionNotFound:
            pass
        width = max(len(k) for k, _ in lines)
        for key, value in lines:
            self.stdout.write(f"{key.ljust(width)}  {value}")
        if opts["pem"]:
            self.stdout.write(c.public_bytes(serialization.Encoding.PEM).decode(), ending="")
