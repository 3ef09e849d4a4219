"""``renew_ca NAME [--days N]``: re-certify the CA's current key with a new validity.

A root signs itself again, an intermediate gets a new certificate from its parent; the key, the
subject and the key identifier stay, so everything the CA issued keeps chaining to it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_ca
from pki.rotation import renew_ca


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="CA name")
        parser.add_argument("--days", type=int, help="validity in days (default: the current lifetime)")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["name"])
        cert = renew_ca(ca=ca, actor=self.actor(), validity_days=opts["days"])
        self.stdout.write(
            f"renewed CA {ca.name}: certificate serial {cert.serial}, same key, "
            f"valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z"
        )
