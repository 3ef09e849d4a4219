"""Threat-monitor alerts on the console: acknowledge and resolve (``pki.transparency.monitor``)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from pki.access import Action
from pki.exceptions import PKIError
from pki.models import Alert
from pki.transparency.monitor import acknowledge_alert, resolve_alert
from web.console.auth import console_view
from web.console.common import actor_of, flash_domain_error, require


def _on_alert(request: HttpRequest, pk: int, use_case: Callable[..., Alert], done: str) -> HttpResponse:
    """Run ``use_case`` on alert ``pk`` with the request's note (administrators); back to the dashboard."""
    require(request, Action.MANAGE_CA)
    try:
        alert = use_case(alert_id=pk, actor=actor_of(request), note=request.POST.get("note", ""))
    except PKIError as exc:
        flash_domain_error(request, exc)
    else:
        messages.success(request, f"Alert {alert.pk} {done}.")
    return redirect("console:dashboard")


@console_view
@require_POST
def acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """``acknowledge_alert``: someone is on it (administrators)."""
    return _on_alert(request, pk, acknowledge_alert, "acknowledged")


@console_view
@require_POST
def resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """``resolve_alert``: the episode is over, with a note (administrators)."""
    return _on_alert(request, pk, resolve_alert, "resolved")
