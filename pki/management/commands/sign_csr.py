"""``sign_csr --ca CA --profile P --csr req.pem --out cert.pem [--chain-out chain.pem]``: issue now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.enrollment import sign_csr
from pki.management.base import (
    PKICommand,
    add_certificate_options,
    certificate_options,
    describe,
    get_ca,
    get_profile,
    pem_bundle,
)


class Command(PKICommand):
    help = (
        "Check a CSR against a profile and issue the certificate at once (the operator approves by "
        "running this). --csr - reads the CSR from standard input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", required=True, help="name of the issuing CA")
        parser.add_argument("--profile", required=True, help="profile name, e.g. tls-server")
        parser.add_argument("--csr", required=True, help="PEM or DER CSR file, or - for standard input")
        parser.add_argument("--out", default="-", help="where to write the PEM certificate (default: stdout)")
        parser.add_argument(
            "--chain-out", help="where to write the CA chain (issuing CA up to the root), PEM"
        )
        parser.add_argument("--validity-days", type=int, help="shorter validity than the profile default")
        add_certificate_options(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["ca"])
        profile = get_profile(opts["profile"])
        csr = self.read_input(opts["csr"], opts, what="CSR")
        cert = sign_csr(
            ca=ca,
            profile=profile,
            csr=csr,
            actor=self.actor(),
            validity_days=opts["validity_days"],
            options=certificate_options(opts),
        )
        self.write_output(opts["out"], pem_bundle([cert.x509()]))
        if opts["chain_out"]:
            self.write_output(opts["chain_out"], pem_bundle(ca.chain()))
        written = ", ".join(p for p in (opts["out"], opts["chain_out"]) if p and p != "-")
        message = f"issued under profile {profile.name}: {describe(cert)}"
        if written:
            message += f"; wrote {written}"
        # With the certificate on stdout, the report goes to stderr so a pipe gets only PEM.
        (self.stderr if opts["out"] == "-" else self.stdout).write(message)
