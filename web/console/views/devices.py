"""EST and SCEP labels: create, enable and disable, one-time codes and challenges (shown once)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from pki.access import Action, can, visible_device_labels
from pki.est.labels import create_enrollment_codes, create_est_label, set_label_enabled
from pki.exceptions import PKIError
from pki.models import EstLabel, ScepLabel
from pki.scep.labels import create_scep_challenge, request_scep_label
from web.console.auth import console_view
from web.console.common import actor_of, add_domain_error, flash_domain_error, require, visible_or_404
from web.console.forms import DeviceCodesForm, DeviceLabelForm


def _url(kind: str, name: str) -> str:
    base = str(settings.KMI.get("BASE_URL", "")).rstrip("/")
    return f"{base}/.well-known/est/{name}/" if kind == "est" else f"{base}/scep/{name}"


def _create(request: HttpRequest, form: DeviceLabelForm) -> EstLabel | ScepLabel | None:
    if not form.is_valid():
        return None
    f, actor = form.cleaned_data, actor_of(request)
    try:
        if f["protocol"] == "est":
            return create_est_label(
                name=f["name"],
                ca=f["ca"],
                profile=f["profile"],
                client_cas=list(f["client_cas"]),
                actor=actor,
            )
        return request_scep_label(
            name=f["name"],
            ca=f["ca"],
            profile=f["profile"],
            challenge=f["challenge"],
            actor=actor,
            user=request.user,
        )
    except PKIError as exc:
        add_domain_error(form, exc, "name" if "name" in str(exc) else None)
        return None


@console_view
@require_http_methods(["GET", "POST"])
def device_list(request: HttpRequest) -> HttpResponse:
    """``/console/devices/``: the EST and SCEP labels the user sees; administrators create,
    disable and enable them, operators of a label's CA mint its one-time codes and challenges."""
    require(request, Action.VIEW_DEVICE_LABEL)
    which = request.POST.get("form", "")
    label_form = DeviceLabelForm(request.POST if which == "label" else None)
    codes_form = DeviceCodesForm(request.POST if which in ("codes", "challenge") else None)
    minted: dict[str, Any] | None = None
    if request.method == "POST":
        actor = actor_of(request)
        if which == "label":
            require(request, Action.MANAGE_DEVICE_LABEL)
            label = _create(request, label_form)
            if label is not None:
                kind = "est" if isinstance(label, EstLabel) else "scep"
                messages.success(
                    request, f"{kind.upper()} label {label.name} created: {_url(kind, label.name)}"
                )
                return redirect("console:devices")
        else:
            name = request.POST.get("name", "")
            found: EstLabel | ScepLabel = (
                visible_or_404(visible_device_labels(request.user, ScepLabel.objects.all()), name=name)
                if request.POST.get("protocol") == "scep"
                else visible_or_404(visible_device_labels(request.user, EstLabel.objects.all()), name=name)
            )
            try:
                if which in ("enable", "disable"):
                    require(request, Action.MANAGE_DEVICE_LABEL, found)
                    set_label_enabled(label=found, enabled=which == "enable", actor=actor)
                    messages.success(request, f"Label {found.name} {which}d.")
                    return redirect("console:devices")
                require(request, Action.MANAGE_DEVICE_CODE, found)
                if codes_form.is_valid():
                    days = codes_form.cleaned_data["expires_days"]
                    if isinstance(found, EstLabel):
                        codes = create_enrollment_codes(
                            label=found,
                            count=codes_form.cleaned_data["count"],
                            expires_days=days,
                            actor=actor,
                        )
                        minted = {"label": found.name, "url": _url("est", found.name), "codes": codes}
                    else:
                        secret = create_scep_challenge(label=found, expires_days=days, actor=actor)
                        minted = {"label": found.name, "url": _url("scep", found.name), "challenge": secret}
                    codes_form = DeviceCodesForm()
            except PKIError as exc:
                flash_domain_error(request, exc)
                return redirect("console:devices")
    est = visible_device_labels(
        request.user, EstLabel.objects.select_related("ca", "profile").order_by("name")
    )
    scep = visible_device_labels(
        request.user, ScepLabel.objects.select_related("ca", "profile").order_by("name")
    )
    context = {
        "labels": [("est", label, _url("est", label.name)) for label in est]
        + [("scep", label, _url("scep", label.name)) for label in scep],
        "label_form": label_form,
        "codes_form": codes_form,
        "minted": minted,
        "may_manage": can(request.user, Action.MANAGE_DEVICE_LABEL),
        "may_mint": can(request.user, Action.MANAGE_DEVICE_CODE),
    }
    errors = label_form.errors or codes_form.errors
    response = render(request, "console/devices.html", context, status=400 if errors else 200)
    response["Cache-Control"] = "no-store"
    return response
