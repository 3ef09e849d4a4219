"""``verify_audit``: recompute every audit hash chain; exit 1 at the first broken link of any."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from pki.audit import verify_chain
from pki.management.base import PKICommand


class Command(PKICommand):
    help = __doc__

    def handle(self, *args: Any, **opts: Any) -> None:
        report = verify_chain()
        if report.ok:
            self.stdout.write(f"{report.streams} streams, {report.events} events: OK")
            return
        for brk in report.breaks:
            event = f" (event id {brk.event_id})" if brk.event_id is not None else ""
            self.stdout.write(f"BROKEN stream {brk.stream} at seq {brk.seq}{event}: {brk.problem}")
        raise CommandError(
            f"audit chain broken in {len(report.breaks)} of {report.streams} streams "
            f"({report.events} events checked)"
        )
