"""Enrollment in one call: submit a CSR and, when the profile needs no approval, issue at once.

Signing in process (the default), both steps commit together, so a failure while signing
leaves no approved request behind without its certificate. With ``KMI_SIGNING=worker`` the
request is committed first (acknowledged) and then issued through ``pki.signing.run_signing``
on a signing worker; when no worker can be reached, ``SigningUnavailable`` leaves the request
approved, and submitting the same CSR again issues that stored request (once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from django.contrib.auth.models import User
from django.db import transaction

from pki.clock import resolve
from pki.issuance import approve_request, issue_certificate, parse_csr, submit_and_issue, submit_request
from pki.lifecycle_conf import lifecycle_settings
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
    """Submit ``csr``; issue it at once (in the same transaction, or on a signing worker) when
    the profile auto-approves."""
    now = resolve(now)
    if lifecycle_settings().signs_on_worker:
        return _enroll_through_signer(
            ca=ca,
            profile=profile,
            csr=csr,
            actor=actor,
            requester=requester,
            validity_days=validity_days,
            now=now,
        )
    request, certificate = submit_and_issue(
        ca=ca,
        profile=profile,
        csr=csr,
        actor=actor,
        requester=requester,
        validity_days=validity_days,
        now=now,
    )
    return Enrollment(request=request, certificate=certificate)


def _enroll_through_signer(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: bytes | str | x509.CertificateSigningRequest,
    actor: str,
    requester: User | None,
    validity_days: int | None,
    now: dt.datetime,
) -> Enrollment:
    """Commit the request, then have a signing worker issue it (``KMI_SIGNING=worker``)."""
    checked = parse_csr(csr)
    # A retry of an enrollment the signer did not finish: the same requester, CA, profile and
    # CSR find the approved request stored the first time and issue that one.
    request = (
        CertificateRequest.objects.filter(
            ca=ca,
            profile=profile,
            requester=requester,
            key_fingerprint=checked.key_fingerprint,
            state=RequestState.APPROVED,
            csr_der=checked.der,
        )
        .select_related("ca", "profile")
        .order_by("pk")
        .first()
        if requester is not None
        else None
    )
    if request is None:
        request = submit_request(
            ca=ca,
            profile=profile,
            csr=checked.csr,
            actor=actor,
            requester=requester,
            validity_days=validity_days,
            now=now,
        )
    if request.state != RequestState.APPROVED:
        return Enrollment(request=request, certificate=None)
    return Enrollment(request=request, certificate=issue_through_signer(request=request, actor=actor))


def issue_through_signer(*, request: CertificateRequest, actor: str) -> Certificate:
    """Issue a committed, approved request with ``run_signing("issue_request")`` and load the result.

    Raises ``SigningUnavailable`` when no signer answered (the request stays approved).
    """
    from pki.signing import run_signing

    result = run_signing("issue_request", request_id=request.pk, actor=actor)
    certificate = Certificate.objects.select_related("ca", "profile").get(pk=result["certificate_id"])
    request.state = RequestState.ISSUED
    return certificate


def approve_and_issue(
    *,
    request: CertificateRequest,
    actor: str,
    reviewer: User | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Approve a pending request and issue its certificate, both or neither.

    With ``KMI_SIGNING=worker`` the approval is committed first and the signing worker issues
    it; when no worker answers, ``SigningUnavailable`` leaves the request approved.
    """
    now = resolve(now)
    if lifecycle_settings().signs_on_worker:
        approved = approve_request(request=request, actor=actor, reviewer=reviewer, now=now)
        return issue_through_signer(request=approved, actor=actor)
    with transaction.atomic():
        approved = approve_request(request=request, actor=actor, reviewer=reviewer, now=now)
        return issue_certificate(request=approved, actor=actor, now=now)
