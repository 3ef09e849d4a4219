"""``sign_ca_csr --ca PARENT --csr FILE --out FILE [--path-length N] [--validity-days N]``: sign a
CA certificate for another CA's CSR (an online KMI's, say, when this instance holds the root
offline). The subject and key come from the CSR; the path length and name constraints are the
CSR's (or ``--path-length``) within what PARENT allows.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_ca, pem_bundle
from pki.offline import sign_ca_request


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", required=True, help="the CA that signs (the parent)")
        parser.add_argument("--csr", required=True, help="the CA's CSR, PEM or DER ('-': standard input)")
        parser.add_argument("--out", required=True, help="where to write the certificate, PEM ('-': stdout)")
        parser.add_argument("--path-length", type=int, help="pathLenConstraint (default: the CSR's)")
        parser.add_argument(
            "--validity-days", type=int, default=1825, help="default 1825 (capped by the parent)"
        )
        parser.add_argument("--chain-out", help="also write the parent's chain here (PEM)")

    def handle(self, *args: Any, **opts: Any) -> None:
        parent = get_ca(opts["ca"])
        cert = sign_ca_request(
            parent=parent,
            csr=self.read_input(opts["csr"], opts, what="CSR"),
            path_length=opts["path_length"],
            validity_days=opts["validity_days"],
            actor=self.actor(),
        )
        self.write_output(opts["out"], pem_bundle([cert.x509()]))
        if opts["chain_out"]:
            self.write_output(opts["chain_out"], pem_bundle(parent.chain()))
        if opts["out"] != "-":
            self.stdout.write(
                f"signed CA certificate {cert.subject} (serial {cert.serial}) under CA {parent.name}, "
                f"valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z: written to {opts['out']}"
            )
