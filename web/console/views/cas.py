"""CAs: the hierarchy, a decoded detail with CRL partitions and OCSP responder, a new
intermediate, disable and enable."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from pki import locations
from pki.access import Action, can
from pki.authorities import set_ca_state
from pki.ca_creation import approve_ca_creation, reject_ca_creation, request_ca_creation
from pki.exceptions import PKIError
from pki.models import (
    CACreation,
    CertificateAuthority,
    CertificateRevocationList,
    CertificateSummary,
    OCSPResponder,
)
from pki.models.authority import CAState
from pki.models.key import TwoPersonState
from pki.x509.describe import describe_certificate
from web.console.auth import console_view
from web.console.common import actor_of, add_domain_error, flash_domain_error, require, visible_or_404
from web.console.forms import CAStateForm, IntermediateForm, RejectForm


def _tree(cas: list[CertificateAuthority]) -> list[dict[str, Any]]:
    children: dict[int | None, list[CertificateAuthority]] = {}
    for ca in cas:
        children.setdefault(ca.parent_id, []).append(ca)

    def node(ca: CertificateAuthority) -> dict[str, Any]:
        return {"ca": ca, "children": [node(c) for c in children.get(ca.pk, [])]}

    return [node(ca) for ca in children.get(None, [])]


@console_view
def ca_list(request: HttpRequest) -> HttpResponse:
    """``/console/cas/``: roots and, under each, the CAs it signed."""
    require(request, Action.VIEW_CA)
    cas = list(CertificateAuthority.objects.select_related("certificate", "key").order_by("name"))
    may_create = can(request.user, Action.CREATE_CA)
    # The approval queue of CA creations (pki.ca_creation): administrators only.
    waiting = (
        list(CACreation.objects.filter(state=TwoPersonState.PENDING).select_related("parent").order_by("pk"))
        if may_create
        else []
    )
    context = {
        "tree": _tree(cas),
        "may_create": may_create,
        "waiting": waiting,
        "user_id": request.user.pk,
    }
    return render(request, "console/cas.html", context)


@console_view
def ca_detail(request: HttpRequest, name: str) -> HttpResponse:
    """``/console/cas/<name>/``: certificate, constraints, CRL partitions, OCSP responder, downloads."""
    require(request, Action.VIEW_CA)
    ca = visible_or_404(
        CertificateAuthority.objects.select_related("certificate", "key", "parent"), name=name
    )
    cert = ca.own_certificate()
    scopes = []
    for shard in range(ca.crl_shards + 1 if ca.crl_shards > 1 else 1):
        latest = (
            CertificateRevocationList.objects.filter(ca_id=ca.pk, shard=shard)
            .order_by("-crl_number")
            .values("crl_number", "this_update", "next_update", "entry_count")
            .first()
        )
        scopes.append({"shard": shard, "url": locations.crl_url(ca.name, shard or None), "latest": latest})
    responder = OCSPResponder.objects.filter(ca=ca).select_related("certificate").first()
    summary = CertificateSummary.objects.filter(ca=ca).first()
    context = {
        "ca": ca,
        "decoded": describe_certificate(ca.x509_certificate(), bytes(cert.der)),
        "children": ca.children.order_by("name"),
        "scopes": scopes,
        "responder": responder,
        "summary": summary,
        "urls": {
            "cer": locations.ca_certificate_url(ca.name),
            "pem": locations.ca_certificate_pem_url(ca.name),
            "chain": locations.ca_chain_url(ca.name),
            "crl": locations.crl_url(ca.name),
            "ocsp": locations.ocsp_url(ca.name),
        },
        "may_manage": can(request.user, Action.MANAGE_KEY, ca),
        "may_create": can(request.user, Action.CREATE_CA),
        "state_form": CAStateForm(initial={"enabled": ca.state != "active"}),
    }
    return render(request, "console/ca_detail.html", context)


@console_view
@require_POST
def ca_state(request: HttpRequest, name: str) -> HttpResponse:
    """Disable or enable (``pki.authorities.set_ca_state``; administrators)."""
    ca = visible_or_404(CertificateAuthority.objects.all(), name=name)
    require(request, Action.MANAGE_KEY, ca)
    form = CAStateForm(request.POST)
    if form.is_valid():
        enabled = form.cleaned_data["enabled"]
        try:
            set_ca_state(
                ca=ca,
                state=CAState.ACTIVE if enabled else CAState.DISABLED,
                reason=form.cleaned_data["reason"],
                actor=actor_of(request),
            )
        except PKIError as exc:
            flash_domain_error(request, exc)
        else:
            messages.success(request, f"CA {ca.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("console:ca", name=ca.name)


@console_view
@require_http_methods(["GET", "POST"])
def ca_create(request: HttpRequest) -> HttpResponse:
    """``/console/cas/new/``: ``create_intermediate_ca`` (``create_root_ca`` without a parent) where
    signing runs (administrators)."""
    require(request, Action.CREATE_CA)
    initial = {"parent": request.GET.get("parent", "")}
    form = IntermediateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        f = form.cleaned_data
        constraints = {"permitted": f["permitted"], "excluded": f["excluded"]}
        try:
            row = request_ca_creation(
                name=f["name"],
                subject=f["subject"],
                parent=f["parent"],
                key_type=f["key_type"],
                validity_days=f["validity_days"],
                path_length=f["path_length"],
                name_constraints=constraints if f["permitted"] or f["excluded"] else None,
                requester=request.user,  # type: ignore[arg-type]
                actor=actor_of(request),
            )
        except PKIError as exc:
            text = str(exc)
            field = next(
                (n for n in ("name", "subject", "path_length") if n.replace("_", " ") in text.lower()), None
            )
            if field is None and ("dns:" in text or "constraint" in text):
                field = "permitted"
            add_domain_error(form, exc, field)
        else:
            if row.state != TwoPersonState.DONE:
                messages.success(
                    request, f"CA {f['name']} is waiting for another administrator's approval (below)."
                )
                return redirect("console:cas")
            where = f"under {f['parent'].name}" if f["parent"] is not None else "as a new root"
            messages.success(request, f"CA {f['name']} created {where}.")
            return redirect("console:ca", name=f["name"])
    return render(request, "console/ca_new.html", {"form": form})


@console_view
@require_POST
def ca_creation_approve(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve a CA creation (``pki.ca_creation.approve_ca_creation``; another administrator)."""
    require(request, Action.CREATE_CA)
    row = visible_or_404(CACreation.objects.all(), pk=pk)
    try:
        row = approve_ca_creation(creation=row, approver=request.user, actor=actor_of(request))  # type: ignore[arg-type]
    except PKIError as exc:
        flash_domain_error(request, exc)
        return redirect("console:cas")
    if row.state == TwoPersonState.DONE:
        messages.success(request, f"CA {row.name} created.")
        return redirect("console:ca", name=row.name)
    messages.success(request, f"Approval of CA {row.name} recorded: it needs another administrator.")
    return redirect("console:cas")


@console_view
@require_POST
def ca_creation_reject(request: HttpRequest, pk: int) -> HttpResponse:
    """Reject (or withdraw) a CA creation with a reason (``pki.ca_creation.reject_ca_creation``)."""
    require(request, Action.CREATE_CA)
    row = visible_or_404(CACreation.objects.all(), pk=pk)
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A rejection needs a reason.")
        return redirect("console:cas")
    try:
        reject_ca_creation(
            creation=row,
            reviewer=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
            reason=form.cleaned_data["reason"],
        )
    except PKIError as exc:
        flash_domain_error(request, exc)
    else:
        messages.success(request, f"CA creation {row.name} rejected.")
    return redirect("console:cas")
