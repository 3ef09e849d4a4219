"""Renewal as the adapters ask for it: issued at once, or submitted for review when the profile
needs approval (renewal is issuance: the same policy, grants and approvals hold).

With ``KMI_SIGNING=worker`` the successor is issued by a signing worker (``renew_certificate``
through ``pki.signing.run_signing``), as the REST API's renewal is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from django.contrib.auth.models import User

from pki.clock import resolve
from pki.enrollment import issue_approved
from pki.issuance import CSRInput, new_request, parse_csr, plan_renewal, renew_certificate, store_submission
from pki.models.certificate import Certificate
from pki.models.request import CertificateRequest, RequestState
from pki.signing import run_signing, signs_here


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
    csr: CSRInput | None = None,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
    approved: bool = False,
) -> CertificateRequest:
    """Check a renewal like ``renew_certificate`` and store it as a pending request for review.

    The request names the certificate it renews; once approved (by someone else) it issues
    the successor. Without a CSR the successor keeps the certificate's key. ``approved``: the
    profile needs no approval and the request is stored approved, for a signing worker to issue.
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
        auto=approved,
        now=now,
        renews=certificate,
    )
    return store_submission(request, details, actor=actor, now=now)


def renew(
    *,
    certificate: Certificate,
    actor: str,
    renewer: User | None = None,
    csr: CSRInput | None = None,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
) -> Renewal:
    """Renew ``certificate``: at once, or as a pending request when its profile needs approval.

    A renewal by a device (no ``renewer``: EST, SCEP) on a signing worker is stored as an approved
    request first, which the worker issues (it acts only on committed rows). A stored renewal
    asked again (this certificate, this actor, the same key: a device repeating its request,
    RFC 7030 §4.2.3) is checked again and answers with the first request: still pending, or its
    successor once issued.
    """
    now = resolve(now)
    checked = parse_csr(csr) if csr is not None else None
    approval = needs_approval(certificate)
    if approval or (renewer is None and not signs_here()):
        fingerprint = checked.key_fingerprint if checked is not None else certificate.key_fingerprint
        asked = (
            CertificateRequest.objects.filter(
                renews=certificate,
                requested_by=actor,
                key_fingerprint=fingerprint,
                state__in=(RequestState.PENDING, RequestState.APPROVED, RequestState.ISSUED),
            )
            .select_related("ca", "profile")
            .order_by("pk")
            .first()
        )
        if asked is not None:
            # Asked again: checked again (a grant revoked since refuses it), nothing stored.
            plan_renewal(
                certificate=certificate,
                actor=actor,
                renewer=renewer,
                csr=checked,
                validity_days=validity_days,
                now=now,
            )
        request = asked or submit_renewal(
            certificate=certificate,
            actor=actor,
            renewer=renewer,
            csr=checked,
            validity_days=validity_days,
            now=now,
            approved=not approval,
        )
        return Renewal(certificate=issue_approved(request, actor=actor), request=request)
    if not signs_here():
        pem = checked.csr.public_bytes(serialization.Encoding.PEM).decode() if checked is not None else None
        new_pk = run_signing(
            "renew_certificate",
            certificate_id=certificate.pk,
            csr_pem=pem,
            validity_days=validity_days,
            renewer_id=renewer.pk if renewer is not None else None,
            actor=actor,
            user=renewer,
        )["certificate_id"]
        return Renewal(
            certificate=Certificate.objects.select_related("ca", "profile").get(pk=new_pk), request=None
        )
    new = renew_certificate(
        certificate=certificate,
        actor=actor,
        renewer=renewer,
        csr=checked,
        validity_days=validity_days,
        now=now,
    )
    return Renewal(certificate=new, request=None)
