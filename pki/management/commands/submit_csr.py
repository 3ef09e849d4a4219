"""``submit_csr --ca CA --profile P --csr req.pem``: queue a request (issued at once if auto-approved)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.enrollment import enroll
from pki.management.base import (
    PKICommand,
    add_certificate_options,
    certificate_options,
    describe,
    get_ca,
    get_profile,
    pem_bundle,
)
from pki.models import RequestState


class Command(PKICommand):
    help = (
        "Submit a CSR under a profile and print the request id and state. A profile that needs "
        "approval leaves it pending (approve_request ID); otherwise it is issued at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", required=True, help="name of the issuing CA")
        parser.add_argument("--profile", required=True, help="profile name, e.g. tls-client")
        parser.add_argument("--csr", required=True, help="PEM or DER CSR file, or - for standard input")
        parser.add_argument("--validity-days", type=int, help="shorter validity than the profile default")
        parser.add_argument("--out", help="where to write the certificate if it is issued at once")
        parser.add_argument(
            "--no-issue", action="store_true", help="stop at 'approved' even when the profile auto-approves"
        )
        add_certificate_options(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        enrollment = enroll(
            ca=get_ca(opts["ca"]),
            profile=get_profile(opts["profile"]),
            csr=self.read_input(opts["csr"], opts, what="CSR"),
            actor=self.actor(),
            validity_days=opts["validity_days"],
            options=certificate_options(opts),
            issue=not opts["no_issue"],
        )
        request, cert = enrollment.request, enrollment.certificate
        if cert is not None:
            if opts["out"]:
                self.write_output(opts["out"], pem_bundle([cert.x509()]))
            self.stdout.write(f"request {request.pk}: {request.state}; {describe(cert)}")
            return
        self.stdout.write(f"request {request.pk}: {request.state} ({request.subject or request.san_text})")
        if request.state == RequestState.PENDING:
            self.stdout.write(f"an operator approves it with: manage.py approve_request {request.pk}")
