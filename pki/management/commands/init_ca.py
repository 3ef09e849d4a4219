"""``init_ca --name NAME [--parent P] --subject DN --key-type T``: create a root or intermediate CA."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.crl import set_crl_shards
from pki.management.base import PKICommand, get_ca
from pki.models import KeyType
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
