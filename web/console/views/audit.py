"""The audit trail: filters, verification with its result, export as JSON lines (the API's)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from pki import health
from pki.access import Action, visible_audit_events
from pki.audit_checkpoints import latest_checkpoint
from pki.models import AuditVerification
from web.console.auth import console_view
from web.console.common import actor_of, keyset_page, require, utc
from web.console.forms import AuditFilterForm


@console_view
def audit_list(request: HttpRequest) -> HttpResponse:
    """``/console/audit/``: by actor, action, object and time, newest first."""
    require(request, Action.VIEW_AUDIT)
    form = AuditFilterForm(request.GET)
    qs = visible_audit_events(request.user)
    api_params: dict[str, str] = {}
    if form.is_valid():
        f = form.cleaned_data
        for name in ("actor", "action", "object_type", "object_id"):
            if f[name]:
                qs = qs.filter(**{name: f[name]})
                api_params[name] = f[name]
        if f["since"]:
            qs = qs.filter(timestamp__gte=utc(f["since"]))
            api_params["since"] = utc(f["since"]).isoformat()  # type: ignore[union-attr]
        if f["until"]:
            qs = qs.filter(timestamp__lt=utc(f["until"]))
            api_params["until"] = utc(f["until"]).isoformat()  # type: ignore[union-attr]
    else:
        qs = qs.none()
    export = reverse("api:audit-event-export") + ("?" + urlencode(api_params) if api_params else "")
    context = {
        "form": form,
        "page": keyset_page(request, qs),
        "export_url": export,
        "verification": AuditVerification.objects.first(),
        "checkpoint": latest_checkpoint(),
    }
    return render(request, "console/audit.html", context)


@console_view
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Verify every chain now (``pki.health.verify_audit``, as the API's verify) and show the result."""
    require(request, Action.VIEW_AUDIT)
    result = health.verify_audit(actor=actor_of(request))
    if result.ok:
        messages.success(
            request, f"Audit trail verified: {result.events} events in {result.streams} chains, no break."
        )
    else:
        messages.error(request, f"Audit trail BROKEN in {len(result.breaks)} chain(s); see below.")
    return redirect("console:audit")
