"""``key_state KEY {suspend,reactivate,deactivate,compromised,destroy}``: move a key between the
states of NIST SP 800-57 (audited).

KEY is a key id (UUID), an SPKI SHA-256 (hex) or a CA name (its current key). ``compromised``
revokes every certificate carrying the key (cACompromise for a CA key, with ``--revoke-issued``
also everything that key signed) and alerts; ``destroy`` erases the private key for good (a CA
key needs a second administrator: see the key controls in the manual).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.key_controls import KeyAction, change_key_state, find_key
from pki.management.base import PKICommand, parse_instant


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="key id, SPKI SHA-256 or CA name")
        parser.add_argument("action", choices=[a.value for a in KeyAction])
        parser.add_argument("--reason", default="", help="why (recorded in the audit trail)")
        parser.add_argument(
            "--revoke-issued",
            action="store_true",
            help="compromised CA key: also revoke every unexpired certificate it signed",
        )
        parser.add_argument("--invalidity-date", help="compromised: since when the key is suspect (ISO 8601)")

    def handle(self, *args: Any, **opts: Any) -> None:
        key = find_key(opts["key"])
        outcome = change_key_state(
            key=key,
            action=KeyAction(opts["action"]),
            actor=self.actor(),
            reason=opts["reason"],
            revoke_issued=opts["revoke_issued"],
            invalidity_date=parse_instant(opts["invalidity_date"]) if opts["invalidity_date"] else None,
        )
        self.stdout.write(outcome.message)
