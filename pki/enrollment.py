"""Enrollment in one call: submit a CSR and, when the profile needs no approval, issue at once.

Both steps commit together, so a failure while signing leaves no approved request behind
without its certificate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from django.contrib.auth.models import User
from django.db import transaction

from pki.clock import resolve
from pki.issuance import approve_request, issue_certificate, submit_request
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.profile import Profile
from pki.models.request import CertificateRequest, RequestState


@dataclass(frozen=True)
class Enrollment:
    """The stored request and, when it was issued at once, its certificate."""

    request: CertificateRequest
    certificate: Certificate | None


def enroll(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: bytes | str | x509.CertificateSigningRequest,
    actor: str,
    requester: User | None = None,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
) -> Enrollment:
    """Submit ``csr``; issue it in the same transaction when the profile auto-approves."""
    now = resolve(now)
    with transaction.atomic():
        request = submit_request(
            ca=ca,
            profile=profile,
            csr=csr,
            actor=actor,
            requester=requester,
            validity_days=validity_days,
            now=now,
        )
        if request.state != RequestState.APPROVED:
            return Enrollment(request=request, certificate=None)
        certificate = issue_certificate(request=request, actor=actor, now=now)
    return Enrollment(request=request, certificate=certificate)


def approve_and_issue(
    *,
    request: CertificateRequest,
    actor: str,
    reviewer: User | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Approve a pending request and issue its certificate, both or neither."""
    now = resolve(now)
    with transaction.atomic():
        approved = approve_request(request=request, actor=actor, reviewer=reviewer, now=now)
        return issue_certificate(request=approved, actor=actor, now=now)
