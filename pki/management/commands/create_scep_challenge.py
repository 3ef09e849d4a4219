"""``create_scep_challenge --label L [--expires-days N]``: print a one-time challenge password."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.exceptions import NotFound
from pki.management.base import PKICommand
from pki.models import ScepLabel
from pki.scep.labels import create_scep_challenge


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label", required=True, help="the SCEP label")
        parser.add_argument("--expires-days", type=int, default=7, help="days it stays usable (7)")

    def handle(self, *args: Any, **opts: Any) -> None:
        label = ScepLabel.objects.filter(name=opts["label"]).first()
        if label is None:
            raise NotFound(f"no SCEP label named {opts['label']!r}")
        self.stdout.write(
            create_scep_challenge(label=label, expires_days=opts["expires_days"], actor=self.actor())
        )
