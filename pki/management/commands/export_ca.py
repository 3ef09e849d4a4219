"""``export_ca NAME --out FILE [--chain] [--der] [--generation N | --links]``: write a CA's certificate.

The current generation by default; ``--generation N`` an earlier (or pending) one; ``--links``
the two link certificates a root rollover made for that generation (its key signed by the
previous key, then the previous key signed by its key).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from django.core.management.base import CommandParser

from pki.generations import generation_of
from pki.management.base import PKICommand, get_ca, pem_bundle
from pki.models.authority import certificate_chain


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="CA name")
        parser.add_argument("--out", default="-", help="file to write (default: stdout, PEM only)")
        parser.add_argument("--chain", action="store_true", help="the CA and its parents up to the root")
        parser.add_argument("--der", action="store_true", help="DER instead of PEM (one certificate)")
        parser.add_argument("--generation", type=int, help="that generation (key) of the CA")
        parser.add_argument(
            "--links",
            action="store_true",
            help="the link certificates a root rollover made for the generation",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["name"])
        if opts["links"]:
            generation = generation_of(ca, opts["generation"])
            links = [c for c in (generation.link_from_previous, generation.link_to_previous) if c is not None]
            if not links:
                raise ValueError(f"CA {ca.name} generation {generation.number} has no link certificates")
            certs = [c.x509() for c in links]
        elif opts["generation"] is not None:
            generation = generation_of(ca, opts["generation"])
            if generation.certificate is None:
                raise ValueError(f"CA {ca.name} generation {generation.number} has no certificate")
            rows = certificate_chain(generation.certificate)
            certs = rows if opts["chain"] else rows[:1]
        else:
            certs = ca.chain() if opts["chain"] else [ca.x509_certificate()]
        if opts["der"]:
            if opts["chain"] or len(certs) > 1:
                raise ValueError("DER holds one certificate: drop --chain/--links, or use PEM")
            if opts["out"] == "-":
                raise ValueError("DER is binary: give --out FILE")
            data = certs[0].public_bytes(serialization.Encoding.DER)
        else:
            data = pem_bundle(certs)
        self.write_output(opts["out"], data)
        if opts["out"] != "-":
            what = f"{len(certs)} certificates" if len(certs) > 1 else "certificate"
            fmt = "DER" if opts["der"] else "PEM"
            self.stdout.write(f"wrote CA {ca.name}'s {what} ({fmt}) to {opts['out']}")
