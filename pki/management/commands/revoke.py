"""``revoke SERIAL --reason R [--invalidity-date ISO8601] [--ca NAME]``: revoke or hold a certificate."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_certificate, parse_instant
from pki.models import RevocationReason
from pki.revocation import revoke_certificate

REASONS = [r for r in RevocationReason.values if r != RevocationReason.REMOVE_FROM_CRL]


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serial", help="serial number in hex (colons and 0x allowed)")
        parser.add_argument("--reason", required=True, choices=REASONS, help="RFC 5280 CRLReason")
        parser.add_argument("--invalidity-date", help="when the key is known or suspected to have been bad")
        parser.add_argument("--ca", help="issuing CA name (needed when two CAs share the serial)")

    def handle(self, *args: Any, **opts: Any) -> None:
        cert = get_certificate(opts["serial"], opts["ca"])
        invalidity = parse_instant(opts["invalidity_date"]) if opts["invalidity_date"] else None
        cert = revoke_certificate(
            certificate=cert, reason=opts["reason"], invalidity_date=invalidity, actor=self.actor()
        )
        assert cert.revoked_at is not None
        verb = "put on hold" if cert.revocation_reason == RevocationReason.CERTIFICATE_HOLD else "revoked"
        self.stdout.write(
            f"{verb} {cert.serial} ({cert.revocation_reason}) of CA {cert.ca}: "
            f"since {cert.revoked_at:%Y-%m-%d %H:%M:%S}Z; committed, in the next CRL"
        )
