"""``monitor [--once] [--interval S]``: run the threat monitor (detectors, alerts, delivery).

With ``--once`` it runs one pass and prints what it raised, refreshed and resolved; without, it
runs a pass every ``--interval`` seconds until interrupted (Celery beat does the same every
minute in production).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandParser

from pki.management.base import PKICommand
from pki.transparency.monitor import run_monitor


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--interval", type=int, default=60, help="seconds between passes (default 60)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["interval"] < 1:
            raise ValueError("--interval must be at least 1 second")
        while True:
            report = run_monitor()
            for verb, alerts in (
                ("RAISED", report.raised),
                ("still", report.refreshed),
                ("resolved", report.resolved),
            ):
                for alert in alerts:
                    self.stdout.write(f"{verb} {alert.kind} {alert.subject}: {alert.summary}")
            if not (report.raised or report.refreshed):
                self.stdout.write("no alerts")
            if opts["once"]:
                return
            time.sleep(opts["interval"])
