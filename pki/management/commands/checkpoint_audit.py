"""``checkpoint_audit``: sign, store and export an audit checkpoint now (beat does it every
``KMI_AUDIT_CHECKPOINT_SECONDS``); ``--public-key FILE`` writes the audit key's public key (PEM)
for auditors to pin with ``verify_audit --public-key``.

The checkpoint covers every lane's head and count; it is appended to
``KMI_AUDIT_CHECKPOINT_PATH`` before its row commits. Nothing is signed when an event written
since the last checkpoint does not verify (exit 1).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.audit_checkpoints import audit_key, checkpoint_file, make_checkpoint, public_key_pem
from pki.management.base import PKICommand


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--public-key",
            metavar="FILE",
            help="write the audit key's public key (PEM) to FILE ('-': standard output) and stop",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["public_key"]:
            key = audit_key(actor=self.actor())
            self.write_output(opts["public_key"], public_key_pem(key).encode())
            return
        row = make_checkpoint(actor=self.actor())
        self.stdout.write(
            f"checkpoint {row.number}: {row.events} events in {len(row.lanes)} lanes, "
            f"signed by audit key {row.key.spki_sha256[:16]}, exported to {checkpoint_file()}"
        )
