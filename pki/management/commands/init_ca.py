"""``init_ca --name NAME [--parent P] --subject DN --key-type T [--csr-out FILE]``: create a CA.

A root (no ``--parent``) or an intermediate of a KMI CA. With ``--csr-out`` only the key and a
CSR are made: the CA waits for the certificate an issuer outside KMI signs (an offline root),
installed with ``install_ca_cert``.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from django.core.management.base import CommandParser

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.crl import set_crl_shards
from pki.management.base import PKICommand, get_ca
from pki.models import KeyType
from pki.offline import request_ca_certificate
from pki.x509.names import parse_subject


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="short name used in URLs, e.g. issuing")
        parser.add_argument("--parent", help="name of the parent CA (omit for a root)")
        parser.add_argument("--subject", required=True, help='RFC 4514 DN, e.g. "CN=KMI Root,O=KMI"')
        parser.add_argument("--key-type", default=KeyType.EC_P256, choices=KeyType.values)
        parser.add_argument("--validity-days", type=int, help="default 3650 (root), 1825 (intermediate)")
        parser.add_argument("--path-length", type=int, help="basicConstraints pathLenConstraint")
        parser.add_argument(
            "--permit",
            action="append",
            default=[],
            help="permitted subtree, e.g. dns:example.test or ip:10.0.0.0/8 (repeatable)",
        )
        parser.add_argument("--exclude", action="append", default=[], help="excluded subtree (repeatable)")
        parser.add_argument("--backend", help="key backend alias (default from settings)")
        parser.add_argument("--crl-shards", type=int, default=1, help="CRL partitions (default 1: one CRL)")
        parser.add_argument(
            "--csr-out",
            help="make the key and write a CSR here; the CA waits for its certificate (install_ca_cert)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        common: dict[str, Any] = {
            "name": opts["name"],
            "subject": parse_subject(opts["subject"]),
            "key_type": opts["key_type"],
            "path_length": opts["path_length"],
            "name_constraints": {"permitted": opts["permit"], "excluded": opts["exclude"]},
            "backend": opts["backend"],
            "actor": self.actor(),
        }
        if opts["csr_out"]:
            self._request(common, opts)
            return
        if opts["validity_days"] is not None:
            common["validity_days"] = opts["validity_days"]
        if opts["parent"]:
            ca = create_intermediate_ca(parent=get_ca(opts["parent"]), **common)
        else:
            ca = create_root_ca(**common)
        if opts["crl_shards"] != 1:
            set_crl_shards(ca=ca, shards=opts["crl_shards"], actor=self.actor())
        cert = ca.own_certificate()
        kind = f"intermediate CA {ca.name} under {ca.parent.name}" if ca.parent else f"root CA {ca.name}"
        self.stdout.write(
            f"created {kind}: {cert.subject}, serial {cert.serial}, "
            f"{ca.key.key_type}, valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z"
        )

    def _request(self, common: dict[str, Any], opts: dict[str, Any]) -> None:
        if opts["parent"] or opts["validity_days"] is not None:
            raise ValueError(
                "with --csr-out the issuer decides the parent and the validity: drop --parent/--validity-days"
            )
        ca, csr = request_ca_certificate(**common)
        self.write_output(opts["csr_out"], csr.public_bytes(serialization.Encoding.PEM))
        if opts["crl_shards"] != 1:
            set_crl_shards(ca=ca, shards=opts["crl_shards"], actor=self.actor())
        self.stdout.write(
            f"CA {ca.name} waits for its certificate: {ca.key.key_type} key made, CSR for "
            f"{csr.subject.rfc4514_string()} written to {opts['csr_out']} "
            f"(install the signed certificate with install_ca_cert {ca.name} --cert FILE)"
        )
