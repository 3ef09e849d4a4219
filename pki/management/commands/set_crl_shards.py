"""``set_crl_shards --ca NAME N``: spread new certificates of a CA over N CRL partitions (1: one CRL)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.crl import set_crl_shards
from pki.management.base import PKICommand, get_ca


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", required=True, help="CA name")
        parser.add_argument("shards", type=int, help="number of partitions (1 = a single full CRL)")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = set_crl_shards(ca=get_ca(opts["ca"]), shards=opts["shards"], actor=self.actor())
        if ca.crl_shards == 1:
            self.stdout.write(f"CA {ca.name}: new certificates name the full CRL")
        else:
            self.stdout.write(
                f"CA {ca.name}: new certificates are spread over {ca.crl_shards} CRL partitions "
                f"(/crl/{ca.name}-1.crl … /crl/{ca.name}-{ca.crl_shards}.crl); the full CRL stays"
            )
