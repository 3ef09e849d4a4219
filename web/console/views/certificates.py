"""Certificates: search, a decoded detail, revoke, hold and release, renew."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pki.access import Action, can, visible_audit_events, visible_certificates
from pki.clock import utcnow
from pki.exceptions import PKIError
from pki.models import Certificate, CertificateAuthority, Profile, RevocationReason
from pki.renewal import needs_approval, submit_renewal
from pki.revocation import release_hold, revoke_certificate
from pki.signing import run_signing
from pki.x509.describe import describe_certificate
from web.console.auth import console_view
from web.console.common import (
    actor_of,
    add_domain_error,
    flash_domain_error,
    keyset_page,
    require,
    user_of,
    utc,
    visible_or_404,
)
from web.console.forms import CertificateFilterForm, RenewForm, RevokeForm, csr_text


@console_view
def certificate_list(request: HttpRequest) -> HttpResponse:
    """``/console/certificates/``: ``q=`` (trigram-indexed), state, CA, profile, expiring before."""
    form = CertificateFilterForm(request.GET)
    now = utcnow()
    qs = visible_certificates(request.user).select_related("ca", "profile").defer("der")
    if form.is_valid():
        f = form.cleaned_data
        # Names become ids first, so the page query filters on indexed columns (as the API does).
        if f["ca"]:
            ca_id = CertificateAuthority.objects.filter(name=f["ca"]).values_list("pk", flat=True).first()
            qs = qs.filter(ca_id=ca_id) if ca_id is not None else qs.none()
        if f["profile"]:
            profile_id = Profile.objects.filter(name=f["profile"]).values_list("pk", flat=True).first()
            qs = qs.filter(profile_id=profile_id) if profile_id is not None else qs.none()
        before = f["expiring_before"]
        qs = qs.matching(  # type: ignore[attr-defined]
            now=now,
            state=f["state"],
            expiring_before=dt.datetime.combine(before, dt.time(), tzinfo=dt.UTC) if before else None,
            q=f["q"].strip(),
        )
    else:
        qs = qs.none()
    page = keyset_page(request, qs)
    context = {
        "form": form,
        "page": page,
        "now": now,
        "cas": CertificateAuthority.objects.order_by("name").values_list("name", flat=True),
        "profiles": Profile.objects.order_by("name").values_list("name", flat=True),
    }
    return render(request, "console/certificates.html", context)


def _certificate(request: HttpRequest, pk: int) -> Certificate:
    qs = visible_certificates(request.user).select_related(
        "ca", "ca__parent", "profile", "key", "owner", "renewed_from"
    )
    return visible_or_404(qs, pk=pk)


def _detail(
    request: HttpRequest,
    cert: Certificate,
    *,
    revoke_form: RevokeForm | None = None,
    renew_form: RenewForm | None = None,
    status: int = 200,
) -> HttpResponse:
    now = utcnow()
    x = cert.x509()
    state = cert.status(now)
    on_hold = cert.revocation_reason == RevocationReason.CERTIFICATE_HOLD
    may_revoke = can(request.user, Action.REVOKE_CERTIFICATE, cert)
    chain = cert.ca.chain() if cert.ca is not None else []
    events = None
    if can(request.user, Action.VIEW_AUDIT):
        events = list(
            visible_audit_events(request.user)
            .filter(object_type="certificate", object_id=str(cert.pk))
            .order_by("id")[:50]
        )
    context = {
        "cert": cert,
        "state": state,
        "on_hold": on_hold,
        "decoded": describe_certificate(x, bytes(cert.der)),
        "chain": [(c.subject.rfc4514_string(), c.not_valid_after_utc) for c in chain],
        "successors": list(
            visible_certificates(request.user, cert.renewals.all())
            .order_by("pk")
            .only("pk", "serial", "not_after")
        ),
        "may_revoke": may_revoke and (state in ("valid", "not_yet_valid") or on_hold),
        "may_unhold": may_revoke and on_hold,
        "may_renew": can(request.user, Action.RENEW_CERTIFICATE, cert)
        and state == "valid"
        and not cert.is_ca,
        "revoke_form": revoke_form or RevokeForm(),
        "renew_form": renew_form or RenewForm(),
        "events": events,
    }
    return render(request, "console/certificate_detail.html", context, status=status)


@console_view
def certificate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/console/certificates/<id>/``: the decoded certificate, its chain, family and audit events."""
    return _detail(request, _certificate(request, pk))


@console_view
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """``pki.revocation.revoke_certificate`` (durable before the page answers)."""
    cert = _certificate(request, pk)
    require(request, Action.REVOKE_CERTIFICATE, cert)
    form = RevokeForm(request.POST)
    if form.is_valid():
        try:
            revoked = revoke_certificate(
                certificate=cert,
                reason=form.cleaned_data["reason"],
                invalidity_date=utc(form.cleaned_data["invalidity_date"]),
                actor=actor_of(request),
            )
        except PKIError as exc:
            field = "invalidity_date" if "invalidity" in str(exc) else "reason"
            add_domain_error(form, exc, field)
        else:
            verb = (
                "put on hold" if revoked.revocation_reason == RevocationReason.CERTIFICATE_HOLD else "revoked"
            )
            messages.success(request, f"Certificate {revoked.serial} {verb} ({revoked.revocation_reason}).")
            return redirect("console:certificate", pk=cert.pk)
    return _detail(request, cert, revoke_form=form, status=400)


@console_view
@require_POST
def unhold(request: HttpRequest, pk: int) -> HttpResponse:
    """``pki.revocation.release_hold``."""
    cert = _certificate(request, pk)
    require(request, Action.REVOKE_CERTIFICATE, cert)
    try:
        release_hold(certificate=cert, actor=actor_of(request))
    except PKIError as exc:
        flash_domain_error(request, exc)
    else:
        messages.success(request, f"Certificate {cert.serial} is off hold and valid again.")
    return redirect("console:certificate", pk=cert.pk)


@console_view
@require_POST
def renew(request: HttpRequest, pk: int) -> HttpResponse:
    """``pki.issuance.renew_certificate`` where signing runs (``run_signing``), as the API's renew."""
    cert = _certificate(request, pk)
    require(request, Action.RENEW_CERTIFICATE, cert)
    form = RenewForm(request.POST, request.FILES)
    if form.is_valid():
        csr = form.cleaned_data.get("csr_bytes")
        if needs_approval(cert):
            # Renewal is issuance: under a profile that needs approval it waits for a reviewer.
            try:
                pending = submit_renewal(
                    certificate=cert,
                    actor=actor_of(request),
                    renewer=user_of(request),
                    csr=csr_text(csr) if csr else None,
                    validity_days=form.cleaned_data["validity_days"],
                )
            except PKIError as exc:
                add_domain_error(form, exc, "csr" if csr else None)
                return _detail(request, cert, renew_form=form, status=400)
            messages.success(
                request, f"Renewal of {cert.serial} submitted: request {pending.pk} awaits approval."
            )
            return redirect("console:request", pk=pending.pk)
        try:
            result = run_signing(
                "renew_certificate",
                certificate_id=cert.pk,
                csr_pem=csr_text(csr) if csr else None,
                validity_days=form.cleaned_data["validity_days"],
                renewer_id=request.user.pk,
                actor=actor_of(request),
                user=request.user,
            )
        except PKIError as exc:
            add_domain_error(form, exc, "csr" if csr else None)
        else:
            messages.success(request, f"Renewed: certificate {result['serial']} succeeds {cert.serial}.")
            return redirect("console:certificate", pk=result["certificate_id"])
    return _detail(request, cert, renew_form=form, status=400)
