"""``verify_log [--log NAME]``: rebuild each log from its certificates and check every tree head.

Recomputes every leaf hash from the certificates' DER, the tree from the leaves, each published
tree head's signature and root, and the consistency between consecutive tree heads. Exits 1 on
any inconsistency.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from pki.management.base import PKICommand
from pki.models import TransparencyLog
from pki.transparency.log import get_log, verify_log


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--log", default="", help="one log (default: every log)")

    def handle(self, *args: Any, **opts: Any) -> None:
        logs = [get_log(opts["log"])] if opts["log"] else list(TransparencyLog.objects.order_by("pk"))
        failed = 0
        for log in logs:
            report = verify_log(log=log)
            if report.ok:
                self.stdout.write(f"{log.name}: {report.leaves} leaves, {report.tree_heads} tree heads: OK")
                continue
            failed += 1
            for problem in report.problems:
                self.stdout.write(f"BROKEN {log.name}: {problem}")
        if failed:
            raise CommandError(f"{failed} of {len(logs)} transparency logs are inconsistent")
