"""``create_log NAME``: create a transparency log (ECDSA P-256 log key) that KMI's issuance feeds."""

from __future__ import annotations

import base64
from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand
from pki.transparency.log import create_log


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the log's name: its URL is KMI_BASE_URL/ct/NAME/")
        parser.add_argument("--mmd", type=int, default=60, help="maximum merge delay in seconds (default 60)")
        parser.add_argument(
            "--sibling",
            action="store_true",
            help="a sibling log that issuance does not feed (e.g. for audit checkpoints)",
        )
        parser.add_argument("--backend", default=None, help="key backend alias of the log key")

    def handle(self, *args: Any, **opts: Any) -> None:
        log = create_log(
            name=opts["name"],
            actor=self.actor(),
            mmd_seconds=opts["mmd"],
            feeds_issuance=not opts["sibling"],
            backend=opts["backend"],
        )
        self.stdout.write(f"log {log.name}: log_id {base64.b64encode(bytes(log.log_id)).decode()}")
