"""The approval queue: filters, a decoded CSR, approve and reject (one or many)."""

from __future__ import annotations

from cryptography import x509
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pki.access import Action, can, visible_audit_events, visible_requests
from pki.enrollment import approve_and_issue
from pki.exceptions import PKIError
from pki.issuance import reject_request
from pki.models import CertificateRequest, RequestState
from pki.x509.describe import describe_csr
from web.console.auth import console_view
from web.console.common import (
    actor_of,
    add_domain_error,
    domain_error,
    flash_domain_error,
    keyset_page,
    require,
    user_of,
    visible_or_404,
)
from web.console.forms import RejectForm, RequestFilterForm

BULK_LIMIT = 100


@console_view
def request_list(request: HttpRequest) -> HttpResponse:
    """``/console/requests/``: pending ones first by default; ``?state=`` ``&ca=`` ``&profile=``."""
    params = request.GET.copy()
    if "state" not in params:
        params["state"] = RequestState.PENDING
    form = RequestFilterForm(params)
    qs = (
        visible_requests(request.user)
        .select_related("ca", "profile")
        .prefetch_related("approvals")
        .defer("csr_der")
    )
    if form.is_valid():
        f = form.cleaned_data
        if f["state"]:
            qs = qs.filter(state=f["state"])
        if f["ca"]:
            qs = qs.filter(ca__name=f["ca"])
        if f["profile"]:
            qs = qs.filter(profile__name=f["profile"])
    else:
        qs = qs.none()
    page = keyset_page(request, qs)
    reviewable = [
        r.pk
        for r in page.items
        if r.state == RequestState.PENDING and can(request.user, Action.REVIEW_REQUEST, r)
    ]
    context = {"form": form, "page": page, "reviewable": reviewable}
    return render(request, "console/requests.html", context)


def _request(request: HttpRequest, pk: int) -> CertificateRequest:
    qs = visible_requests(request.user).select_related("ca", "profile", "requester", "reviewer", "renews")
    return visible_or_404(qs, pk=pk)


def _detail(
    request: HttpRequest, obj: CertificateRequest, reject_form: RejectForm | None = None, status: int = 200
) -> HttpResponse:
    # A renewal that keeps its certificate's key carries no CSR.
    csr = describe_csr(x509.load_der_x509_csr(bytes(obj.csr_der))) if bytes(obj.csr_der) else None
    events = None
    if can(request.user, Action.VIEW_AUDIT):
        events = list(
            visible_audit_events(request.user)
            .filter(object_type="certificaterequest", object_id=str(obj.pk))
            .order_by("id")[:50]
        )
    certificate = getattr(obj, "certificate", None) if obj.state == RequestState.ISSUED else None
    context = {
        "obj": obj,
        "csr": csr,
        "certificate": certificate,
        "can_review": obj.state == RequestState.PENDING and can(request.user, Action.REVIEW_REQUEST, obj),
        "reject_form": reject_form or RejectForm(),
        "approvals": list(obj.approvals.all()),
        "approvals_required": obj.profile.approvals_required if obj.profile.requires_approval else 1,
        "events": events,
    }
    return render(request, "console/request_detail.html", context, status=status)


@console_view
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/console/requests/<id>/``: the decoded CSR, who submitted it, its review."""
    return _detail(request, _request(request, pk))


@console_view
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve and issue (``pki.enrollment.approve_and_issue``, as the API's approve)."""
    obj = _request(request, pk)
    require(request, Action.REVIEW_REQUEST, obj)
    try:
        cert = approve_and_issue(request=obj, actor=actor_of(request), reviewer=user_of(request))
    except PKIError as exc:
        flash_domain_error(request, exc)
        return redirect("console:request", pk=obj.pk)
    if cert is None:  # a profile that needs more approvers than this one (separation of duties)
        messages.success(request, f"Your approval of request {obj.pk} is recorded; it needs more.")
        return redirect("console:request", pk=obj.pk)
    messages.success(request, f"Request {obj.pk} approved; certificate {cert.serial} issued.")
    return redirect("console:certificate", pk=cert.pk)


@console_view
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    """Reject with a reason (``pki.issuance.reject_request``)."""
    obj = _request(request, pk)
    require(request, Action.REVIEW_REQUEST, obj)
    form = RejectForm(request.POST)
    if form.is_valid():
        try:
            reject_request(
                request=obj,
                reason=form.cleaned_data["reason"],
                actor=actor_of(request),
                reviewer=user_of(request),
            )
        except PKIError as exc:
            add_domain_error(form, exc, "reason")
        else:
            messages.success(request, f"Request {obj.pk} rejected.")
            return redirect("console:request", pk=obj.pk)
    return _detail(request, obj, reject_form=form, status=400)


@console_view
@require_POST
def bulk_approve(request: HttpRequest) -> HttpResponse:
    """Approve several pending requests: first a confirmation page listing them, then each in turn
    (every one through ``approve_and_issue``; one refused does not stop the others)."""
    ids = [int(x) for x in request.POST.getlist("ids") if x.isdigit() and len(x) <= 18][:BULK_LIMIT]
    chosen = list(
        visible_requests(request.user)
        .select_related("ca", "profile")
        .defer("csr_der")
        .filter(pk__in=ids, state=RequestState.PENDING)
        .order_by("pk")
    )
    chosen = [r for r in chosen if can(request.user, Action.REVIEW_REQUEST, r)]
    if not chosen:
        messages.error(request, "Select at least one pending request you may review.")
        return redirect("console:requests")
    if request.POST.get("confirmed") != "yes":
        return render(request, "console/bulk_confirm.html", {"chosen": chosen})
    done, failed = [], []
    for obj in chosen:
        try:
            cert = approve_and_issue(request=obj, actor=actor_of(request), reviewer=user_of(request))
        except PKIError as exc:
            failed.append((obj, domain_error(exc)))
        else:
            done.append((obj, cert))  # cert None: this approval recorded, more are needed
    return render(request, "console/bulk_result.html", {"done": done, "failed": failed})
