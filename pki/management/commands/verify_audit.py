"""``verify_audit``: verify the audit trail; exit 1 when anything is wrong.

Every lane's hash chain and every event's MAC; the database's signed checkpoints (signatures,
their own chain, and that the rows still hold what the latest one covered); an emptied trail;
and cross-checks (a certificate valid although its revocation is recorded, a certificate missing
although its issuance is, a role grant the trail never recorded, a key off the blocklist although
its blocking is). ``--checkpoints FILE`` also proves the database still holds everything
each checkpoint exported to FILE covered; ``--public-key PEM`` pins the audit key (repeatable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from django.core.management.base import CommandError, CommandParser

from pki.audit_checkpoints import verify_trail
from pki.management.base import PKICommand


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoints", metavar="FILE", help="an exported checkpoint file to check against"
        )
        parser.add_argument(
            "--public-key",
            metavar="PEM",
            action="append",
            default=[],
            help="trust checkpoints signed by this audit public key (from checkpoint_audit --public-key)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        pinned: list[PublicKeyTypes] = []
        for name in opts["public_key"]:
            try:
                pinned.append(
                    serialization.load_pem_public_key(self.read_input(name, opts, what="public key"))
                )
            except ValueError:
                raise CommandError(f"{name} is not a PEM public key") from None
        checkpoints = None
        if opts["checkpoints"]:
            checkpoints = Path(opts["checkpoints"])
            if not checkpoints.is_file():
                raise CommandError(f"cannot read checkpoint file {checkpoints}")
        report = verify_trail(checkpoints=checkpoints, public_keys=pinned)
        for note in report.notes:
            self.stdout.write(f"note: {note}")
        summary = f"{report.streams} streams, {report.events} events, {report.checkpoints} checkpoints"
        if report.ok:
            self.stdout.write(
                f"{report.streams} streams, {report.events} events: OK ({report.checkpoints} checkpoints)"
            )
            return
        for brk in report.breaks:
            event = f" (event id {brk.event_id})" if brk.event_id is not None else ""
            at = f" at seq {brk.seq}" if brk.seq else ""
            self.stdout.write(f"BROKEN {brk.stream}{at}{event}: {brk.problem}")
        count = len(report.breaks)
        raise CommandError(f"audit trail broken: {count} problem{'s' if count != 1 else ''} ({summary})")
