"""``install_ca_cert NAME --cert FILE [--chain FILE]``: install the certificate a CA waits for.

The certificate (PEM or DER) must carry the CA's key and the subject, path length and name
constraints it asked for. Its issuer must be a CA KMI knows, or be given with ``--chain`` (PEM,
issuer first, up to the root): those certificates are recorded as certificate-only CAs.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_ca, load_certificates
from pki.offline import install_ca_certificate


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the CA waiting for its certificate")
        parser.add_argument("--cert", required=True, help="the certificate its issuer signed (PEM or DER)")
        parser.add_argument("--chain", help="the issuer's certificate and its own issuers, PEM")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["name"])
        [certificate] = load_certificates(self.read_input(opts["cert"], opts, what="certificate"), one=True)
        chain = load_certificates(self.read_input(opts["chain"], opts, what="chain")) if opts["chain"] else []
        ca = install_ca_certificate(ca=ca, certificate=certificate, chain=chain, actor=self.actor())
        cert = ca.own_certificate()
        assert ca.parent is not None
        self.stdout.write(
            f"installed the certificate of CA {ca.name} (serial {cert.serial}, issued by {ca.parent.name}, "
            f"valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z): it issues from now on"
        )
