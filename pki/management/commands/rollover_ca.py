"""``rollover_ca NAME [--key-type T] [--backend B] [--at ISO8601] [--validity-days N] [--csr-out FILE]``.

The CA gets a new key and a certificate for it with the same subject: a root certifies itself
and gets two link certificates (new key signed by the old, old key signed by the new); an
intermediate gets its certificate from its parent. Issuance moves to the new generation now, or
at ``--at``. The previous generation keeps publishing the CRL (and OCSP) of what it issued at
its own URLs until all of it has expired. Under a parent outside KMI (an offline root) the new
key's CSR goes to ``--csr-out``; ``install_ca_cert`` brings the signed certificate.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.locations import crl_url
from pki.management.base import PKICommand, get_ca, parse_instant
from pki.models import KeyType
from pki.rotation import parent_is_outside, rollover_ca


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="CA name")
        parser.add_argument("--key-type", choices=KeyType.values, help="default: the current key's type")
        parser.add_argument("--backend", help="key backend alias (default: the current key's backend)")
        parser.add_argument("--at", help="ISO 8601 time issuance moves to the new key (default: now)")
        parser.add_argument("--validity-days", type=int, help="default: the current certificate's lifetime")
        parser.add_argument("--csr-out", help="under an offline parent: write the new key's CSR here")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["name"])
        outside = parent_is_outside(ca)
        if outside != bool(opts["csr_out"]):
            raise ValueError(
                f"the parent of CA {ca.name} is outside KMI: give --csr-out FILE"
                if outside
                else f"CA {ca.name}'s parent is in KMI and signs the new certificate: drop --csr-out"
            )
        generation = rollover_ca(
            ca=ca,
            actor=self.actor(),
            key_type=opts["key_type"],
            backend=opts["backend"],
            at=parse_instant(opts["at"]) if opts["at"] else None,
            validity_days=opts["validity_days"],
        )
        if generation.certificate is None:
            self.write_output(opts["csr_out"], generation.request_der_pem())
            self.stdout.write(
                f"CA {ca.name} generation {generation.number}: {generation.key.key_type} key made, CSR "
                f"written to {opts['csr_out']}; install the signed certificate with install_ca_cert {ca.name}"
            )
            return
        cert = generation.certificate
        when = (
            f"takes over at {generation.activates_at:%Y-%m-%d %H:%M:%S}Z"
            if generation.activates_at is not None
            else "issues from now on"
        )
        self.stdout.write(
            f"CA {ca.name} generation {generation.number}: {generation.key.key_type} key, "
            f"certificate serial {cert.serial}, valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z; {when}"
        )
        self.stdout.write(f"  its CRL: {crl_url(generation.repository_name)}")
        for label, link in (
            ("link new key <- previous key", generation.link_from_previous),
            ("link previous key <- new key", generation.link_to_previous),
        ):
            if link is not None:
                self.stdout.write(f"  {label}: serial {link.serial}")
