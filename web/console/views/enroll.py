"""Enrolling from the browser: a CSR in, a certificate (or a pending request) out; or a key KMI
generates, handed over once as a password-protected PKCS#12."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from pki.access import Action, can, grants_for
from pki.enrollment import enroll
from pki.exceptions import PKIError, WeakKey
from pki.models import CertificateAuthority, KeyDelivery, Profile, RequestState
from pki.serverkeys import deliver_pkcs12, new_download_secret
from pki.signing import run_signing
from web.console.auth import console_view
from web.console.common import actor_of, add_domain_error, require, submission_field, user_of, visible_or_404
from web.console.forms import EnrollForm, Pkcs12Form, ServerKeyForm


def _choices(request: HttpRequest) -> tuple[models.QuerySet[CertificateAuthority], models.QuerySet[Profile]]:
    """The CAs and profiles the user may submit to (the pair is checked again on submission)."""
    g = grants_for(request.user)
    cas = CertificateAuthority.objects.order_by("name")
    profiles = Profile.objects.filter(is_ca=False).order_by("name")
    if not g.administrator:
        cas = cas.filter(pk__in=g.operator_cas | g.requester_cas)
        if not g.operator_cas:
            profiles = profiles.filter(pk__in={p for _, p in g.requester_pairs})
    return cas, profiles


@console_view
@require_http_methods(["GET", "POST"])
def enroll_csr(request: HttpRequest) -> HttpResponse:
    """``/console/enroll/``: ``pki.enrollment.enroll``, as ``POST /api/v1/enroll``."""
    require(request, Action.SUBMIT_REQUEST)
    cas, profiles = _choices(request)
    form = EnrollForm(request.POST or None, request.FILES or None, cas=cas, profiles=profiles)
    if request.method == "POST" and form.is_valid():
        ca, profile = form.cleaned_data["ca"], form.cleaned_data["profile"]
        if not can(request.user, Action.SUBMIT_REQUEST, (ca, profile)):
            form.add_error("profile", f"Your roles do not let you submit to {ca.name} under {profile.name}.")
        else:
            try:
                result = enroll(
                    ca=ca,
                    profile=profile,
                    csr=form.cleaned_data["csr_bytes"],
                    validity_days=form.cleaned_data["validity_days"],
                    requester=user_of(request),
                    actor=actor_of(request),
                )
            except PKIError as exc:
                add_domain_error(form, exc, submission_field(exc))
            else:
                if result.certificate is not None:
                    messages.success(request, f"Certificate {result.certificate.serial} issued.")
                    return redirect("console:certificate", pk=result.certificate.pk)
                messages.info(request, f"Request {result.request.pk} waits for an operator's approval.")
                return redirect("console:request", pk=result.request.pk)
    return render(request, "console/enroll.html", {"form": form})


@console_view
@require_http_methods(["GET", "POST"])
def server_key(request: HttpRequest) -> HttpResponse:
    """``/console/enroll/server-key/``: ``pki.serverkeys.request_server_key`` where signing runs."""
    require(request, Action.SUBMIT_REQUEST)
    cas, profiles = _choices(request)
    form = ServerKeyForm(request.POST or None, cas=cas, profiles=profiles)
    if request.method == "POST" and form.is_valid():
        f = form.cleaned_data
        if not can(request.user, Action.SUBMIT_REQUEST, (f["ca"], f["profile"])):
            form.add_error(
                "profile", f"Your roles do not let you submit to {f['ca'].name} under {f['profile'].name}."
            )
        else:
            # The one-time download secret stays in this user's session; KMI stores its digest.
            secret, digest = new_download_secret()
            try:
                result = run_signing(
                    "request_server_key",
                    delivery_id=str(uuid.uuid4()),
                    download_secret_sha256=digest,
                    ca_id=f["ca"].pk,
                    profile_id=f["profile"].pk,
                    subject=f["subject"],
                    sans=f["sans"],
                    key_type=f["key_type"],
                    validity_days=f["validity_days"],
                    requester_id=request.user.pk,
                    actor=actor_of(request),
                    user=user_of(request),
                )
            except PKIError as exc:
                field = {"csr": "sans"}.get(submission_field(exc) or "", submission_field(exc))
                if isinstance(exc, WeakKey):
                    field = "key_type"
                elif "subject" in str(exc).lower():
                    field = "subject"
                add_domain_error(form, exc, field)
            else:
                request.session[_secret_key(result["delivery_id"])] = secret
                return redirect("console:server_key_download", pk=result["delivery_id"])
    return render(request, "console/server_key.html", {"form": form})


def _secret_key(delivery_id: object) -> str:
    """Where the session keeps a delivery's one-time download secret."""
    return f"kmi-download-secret-{delivery_id}"


def _delivery(request: HttpRequest, pk: uuid.UUID) -> KeyDelivery:
    # Only the requester's own deliveries exist for them (as the API's server-keys/).
    qs = KeyDelivery.objects.filter(requester_id=request.user.pk).select_related("request", "key")
    return visible_or_404(qs, pk=pk)


@console_view
@require_http_methods(["GET", "POST"])
def server_key_download(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """``/console/server-keys/<id>/``: set a password, download the PKCS#12 once (``deliver_pkcs12``)."""
    delivery = _delivery(request, pk)
    require(request, Action.DOWNLOAD_KEY, delivery)
    form = Pkcs12Form(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            blob = deliver_pkcs12(
                delivery=delivery,
                password=form.cleaned_data["password"],
                download_secret=request.session.get(_secret_key(delivery.pk), ""),
                actor=actor_of(request),
                user=user_of(request),
            )
        except PKIError as exc:
            add_domain_error(form, exc, "password")
        else:
            request.session.pop(_secret_key(delivery.pk), None)
            response = HttpResponse(blob, content_type="application/x-pkcs12")
            response["Content-Disposition"] = f'attachment; filename="{delivery.key_id}.p12"'
            response["Cache-Control"] = "no-store"
            return response
    certificate = (
        getattr(delivery.request, "certificate", None)
        if delivery.request.state == RequestState.ISSUED
        else None
    )
    context = {"delivery": delivery, "form": form, "certificate": certificate}
    return render(request, "console/server_key_download.html", context, status=400 if form.errors else 200)
