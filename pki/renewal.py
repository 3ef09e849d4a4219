"""Renewal as the adapters ask for it: issued at once, or submitted for review when the profile
needs approval (renewal is issuance: the same policy, grants and approvals hold)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from django.contrib.auth.models import User

from pki.clock import resolve
from pki.issuance import new_request, plan_renewal, renew_certificate, store_submission
from pki.models.certificate import Certificate
from pki.models.request import CertificateRequest


@dataclass(frozen=True)
class Renewal:
    """The successor (issued at once) or the pending request waiting for approval."""

    certificate: Certificate | None
    request: CertificateRequest | None


def needs_approval(certificate: Certificate) -> bool:
    """True when renewing ``certificate`` needs an operator's approval (its profile's)."""
    return certificate.profile is not None and certificate.profile.requires_approval


def submit_renewal(
    *,
    certificate: Certificate,
    actor: str,
    renewer: User | None = None,
    csr: bytes | str | x509.CertificateSigningRequest | None = None,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
) -> CertificateRequest:
    """Check a renewal like ``renew_certificate`` and store it as a pending request for review.

    The request names the certificate it renews; once approved (by someone else) it issues
    the successor. Without a CSR the successor keeps the certificate's key.
    """
    now = resolve(now)
    plan = plan_renewal(
        certificate=certificate,
        actor=actor,
        renewer=renewer,
        csr=csr,
        validity_days=validity_days,
        now=now,
    )
    request, details = new_request(
        ca=plan.ca,
        profile=plan.profile,
        csr_der=plan.checked.der if plan.checked is not None else b"",  # empty: keeps the key
        subject=plan.subject,
        actor=actor,
        requester=renewer,
        validity_days=validity_days,
        auto=False,
        now=now,
        renews=certificate,
    )
    return store_submission(request, details, actor=actor, now=now)


def renew(
    *,
    certificate: Certificate,
    actor: str,
    renewer: User | None = None,
    csr: bytes | str | x509.CertificateSigningRequest | None = None,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
) -> Renewal:
    """Renew ``certificate``: at once, or as a pending request when its profile needs approval."""
    if needs_approval(certificate):
        request = submit_renewal(
            certificate=certificate,
            actor=actor,
            renewer=renewer,
            csr=csr,
            validity_days=validity_days,
            now=now,
        )
        return Renewal(certificate=None, request=request)
    new = renew_certificate(
        certificate=certificate, actor=actor, renewer=renewer, csr=csr, validity_days=validity_days, now=now
    )
    return Renewal(certificate=new, request=None)
