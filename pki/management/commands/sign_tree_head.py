"""``sign_tree_head [--log NAME] [--force]``: sequence queued certificates and sign a tree head."""

from __future__ import annotations

import base64
from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand
from pki.models import TransparencyLog
from pki.transparency.log import get_log, sign_tree_head


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--log", default="", help="one log (default: every log)")
        parser.add_argument("--force", action="store_true", help="sign even if the tree did not grow")

    def handle(self, *args: Any, **opts: Any) -> None:
        logs = [get_log(opts["log"])] if opts["log"] else list(TransparencyLog.objects.order_by("pk"))
        for log in logs:
            sth = sign_tree_head(log=log, actor=self.actor(), force=opts["force"])
            root = base64.b64encode(bytes(sth.root_hash)).decode()
            self.stdout.write(
                f"{log.name}: tree_size {sth.tree_size} root {root} timestamp {sth.timestamp_ms}"
            )
