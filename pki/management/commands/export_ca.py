"""``export_ca NAME --out FILE [--chain] [--der]``: write a CA's certificate (or chain)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_ca, pem_bundle


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="CA name")
        parser.add_argument("--out", default="-", help="file to write (default: stdout, PEM only)")
        parser.add_argument("--chain", action="store_true", help="the CA and its parents up to the root")
        parser.add_argument("--der", action="store_true", help="DER instead of PEM (one certificate)")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["name"])
        certs = ca.chain() if opts["chain"] else [ca.x509_certificate()]
        if opts["der"]:
            if opts["chain"]:
                raise ValueError("DER holds one certificate: drop --chain, or use PEM")
            if opts["out"] == "-":
                raise ValueError("DER is binary: give --out FILE")
            data = certs[0].public_bytes(serialization.Encoding.DER)
        else:
            data = pem_bundle(certs)
        self.write_output(opts["out"], data)
        if opts["out"] != "-":
            what = f"chain of {len(certs)} certificates" if opts["chain"] else "certificate"
            fmt = "DER" if opts["der"] else "PEM"
            self.stdout.write(f"wrote CA {ca.name}'s {what} ({fmt}) to {opts['out']}")
