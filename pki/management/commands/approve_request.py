"""``approve_request ID [--out cert.pem]``: approve a pending request and issue its certificate."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.enrollment import approve_and_issue
from pki.management.base import PKICommand, describe, get_request, pem_bundle
from pki.models import RequestState


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id", help="id printed by submit_csr")
        parser.add_argument("--out", help="where to write the issued certificate (PEM)")
        parser.add_argument("--no-issue", action="store_true", help="approve only; issue later")

    def handle(self, *args: Any, **opts: Any) -> None:
        request = get_request(opts["request_id"])
        was_approved = request.state == RequestState.APPROVED  # an approved, unissued request is only issued
        cert = approve_and_issue(request=request, actor=self.actor(), issue=not opts["no_issue"])
        request.refresh_from_db()
        if request.state == RequestState.PENDING:
            # The profile wants more approvals, by other reviewers (separation of duties).
            done, needed = request.approvals.count(), request.profile.approvals_required
            self.stdout.write(
                f"request {request.pk}: approval recorded ({done} of {needed}); awaiting another reviewer"
            )
            return
        if not was_approved:
            self.stdout.write(f"request {request.pk}: approved")
        if cert is None:
            return
        if opts["out"]:
            self.write_output(opts["out"], pem_bundle([cert.x509()]))
        self.stdout.write(f"request {request.pk}: issued {describe(cert)}")
