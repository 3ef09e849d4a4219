"""``renew_cert SERIAL --out new.pem [--csr new.csr]``: issue a successor (same key, or a new one)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.issuance import renew_certificate
from pki.management.base import PKICommand, describe, get_certificate, pem_bundle
from pki.renewal import needs_approval, submit_renewal


class Command(PKICommand):
    help = (
        "Renew a certificate under its profile and CA: the same key and names, or a new key from "
        "--csr (which may not add names)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serial", help="serial of the certificate to renew (hex)")
        parser.add_argument("--ca", help="issuing CA (needed when two CAs issued the same serial)")
        parser.add_argument("--out", default="-", help="where to write the new PEM certificate")
        parser.add_argument("--chain-out", help="where to write the CA chain, PEM")
        parser.add_argument("--csr", help="CSR for a new key (file, or - for standard input)")
        parser.add_argument("--validity-days", type=int, help="shorter validity than the profile default")

    def handle(self, *args: Any, **opts: Any) -> None:
        old = get_certificate(opts["serial"], ca=opts["ca"])
        csr = self.read_input(opts["csr"], opts, what="CSR") if opts["csr"] else None
        if needs_approval(old):
            # Renewal is issuance: the profile's approval applies (approve_request issues it).
            pending = submit_renewal(
                certificate=old, actor=self.actor(), csr=csr, validity_days=opts["validity_days"]
            )
            self.stdout.write(
                f"renewal of {old.serial} submitted as request {pending.pk}: profile "
                f"{pending.profile.name} needs approval (approve_request {pending.pk}, by another operator)"
            )
            return
        new = renew_certificate(
            certificate=old, actor=self.actor(), csr=csr, validity_days=opts["validity_days"]
        )
        self.write_output(opts["out"], pem_bundle([new.x509()]))
        if opts["chain_out"] and new.ca is not None:
            self.write_output(opts["chain_out"], pem_bundle(new.ca.chain()))
        key = "a new key" if csr is not None else "the same key"
        message = f"renewed {old.serial} as {describe(new)} with {key}"
        (self.stderr if opts["out"] == "-" else self.stdout).write(message)
