"""``list_certs [--ca CA] [--expiring-days N] [--revoked]``: a table of certificates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import CommandParser

from pki.clock import utcnow
from pki.management.base import PKICommand, get_ca
from pki.models import Certificate


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", help="only certificates issued by this CA")
        parser.add_argument(
            "--expiring-days", type=int, help="only valid certificates whose notAfter is within N days"
        )
        parser.add_argument("--revoked", action="store_true", help="only revoked (or held) certificates")
        parser.add_argument("--limit", type=int, default=500, help="at most this many rows (default 500)")

    def handle(self, *args: Any, **opts: Any) -> None:
        now = utcnow()
        rows = Certificate.objects.select_related("ca")
        if opts["ca"]:
            rows = rows.filter(ca=get_ca(opts["ca"]))
        if opts["expiring_days"] is not None:
            if opts["expiring_days"] < 0:
                raise ValueError("--expiring-days must not be negative")
            rows = rows.expiring(before=now + dt.timedelta(days=opts["expiring_days"]), now=now)
        if opts["revoked"]:
            rows = rows.revoked()
        total = rows.count()
        certs = list(rows.order_by("not_after", "serial")[: max(opts["limit"], 0)])
        if not certs:
            self.stdout.write("no certificates match")
            return
        table = [("SERIAL", "SUBJECT", "CA", "NOT AFTER (UTC)", "STATUS")]
        for c in certs:
            status = c.status(now)
            if c.revoked_at is not None:
                status = f"revoked ({c.revocation_reason})"
            name = c.subject or (c.san_text.splitlines() or [""])[0]
            table.append(
                (
                    c.serial,
                    name if len(name) <= 48 else name[:47] + "…",
                    c.ca.name if c.ca is not None else "",
                    f"{c.not_after:%Y-%m-%d %H:%M}",
                    status,
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        shown = f"{len(certs)} of {total}" if total > len(certs) else str(total)
        self.stdout.write(f"{shown} certificate{'s' if total != 1 else ''}")
