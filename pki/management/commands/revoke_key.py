"""``revoke_key SPKI_SHA256 [--reason R] [--invalidity-date ISO8601]``: revoke every certificate of a key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand, parse_instant
from pki.management.commands.revoke import REASONS
from pki.models import RevocationReason
from pki.revocation import revoke_key


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("spki_sha256", help="SHA-256 of the SubjectPublicKeyInfo, hex (colons allowed)")
        parser.add_argument("--reason", default=RevocationReason.KEY_COMPROMISE, choices=REASONS)
        parser.add_argument("--invalidity-date", help="when the key is known or suspected to have been bad")

    def handle(self, *args: Any, **opts: Any) -> None:
        fingerprint = opts["spki_sha256"].strip().lower().replace(":", "")
        if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
            raise ValueError(f"{opts['spki_sha256']!r} is not a SHA-256 fingerprint (64 hex digits)")
        invalidity = parse_instant(opts["invalidity_date"]) if opts["invalidity_date"] else None
        certs = revoke_key(
            spki_sha256=fingerprint, reason=opts["reason"], invalidity_date=invalidity, actor=self.actor()
        )
        for cert in certs:
            self.stdout.write(f"{cert.serial} of CA {cert.ca}: {cert.revocation_reason}")
        self.stdout.write(f"{len(certs)} unexpired certificate(s) carry key {fingerprint[:16]}…: all revoked")
