"""``reject_request ID --reason "..."``: reject a pending request."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.issuance import reject_request
from pki.management.base import PKICommand, get_request


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id", help="id printed by submit_csr")
        parser.add_argument("--reason", required=True, help="why (kept with the request and audited)")

    def handle(self, *args: Any, **opts: Any) -> None:
        request = reject_request(
            request=get_request(opts["request_id"]), reason=opts["reason"], actor=self.actor()
        )
        self.stdout.write(f"request {request.pk}: rejected ({request.reason})")
