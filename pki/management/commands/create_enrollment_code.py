"""``create_enrollment_code --label L [--expires-days N] [--count N]``: one-time EST codes, shown once.

Each line reads ``<code id> <code>``: HTTP Basic user and password of one device.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.est.labels import create_enrollment_codes
from pki.exceptions import NotFound
from pki.management.base import PKICommand
from pki.models import EstLabel


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label", required=True, help="the EST label")
        parser.add_argument("--expires-days", type=int, default=7, help="days the code stays usable (7)")
        parser.add_argument("--count", type=int, default=1, help="how many codes, one per device (1)")

    def handle(self, *args: Any, **opts: Any) -> None:
        label = EstLabel.objects.filter(name=opts["label"]).first()
        if label is None:
            raise NotFound(f"no EST label named {opts['label']!r}")
        codes = create_enrollment_codes(
            label=label, count=opts["count"], expires_days=opts["expires_days"], actor=self.actor()
        )
        for code in codes:
            self.stdout.write(f"{code.code_id} {code.secret}")
        self.stderr.write(
            f"{len(codes)} code(s) for label {label.name}, usable once until "
            f"{codes[0].not_after:%Y-%m-%d %H:%M} UTC: "
            "HTTP Basic user = first column, password = second. They are shown only now."
        )
