"""``unhold SERIAL [--ca NAME]``: release a certificate from certificateHold (it is valid again)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_certificate
from pki.revocation import release_hold


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serial", help="serial number in hex")
        parser.add_argument("--ca", help="issuing CA name (needed when two CAs share the serial)")

    def handle(self, *args: Any, **opts: Any) -> None:
        cert = get_certificate(opts["serial"], opts["ca"])
        cert = release_hold(certificate=cert, actor=self.actor())
        self.stdout.write(f"released {cert.serial} of CA {cert.ca} from hold: valid again")
