"""ACME endpoints: policy, enable and disable, external account keys (shown once), accounts."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from pki.access import Action, can, visible_acme_endpoints
from pki.acme.endpoints import (
    POLICY_FIELDS,
    create_eab_key,
    create_endpoint,
    revoke_eab_key,
    set_endpoint_enabled,
    update_endpoint,
)
from pki.acme.locations import directory_url
from pki.exceptions import PKIError
from pki.models import AcmeAccount, AcmeEndpoint
from web.console.auth import console_view
from web.console.common import actor_of, add_domain_error, flash_domain_error, require, visible_or_404
from web.console.forms import EabKeyForm, EndpointForm, EndpointPolicyForm

POLICY = sorted(POLICY_FIELDS)  # what update_endpoint may change, as the policy form's fields


def _field_of(exc: PKIError) -> str | None:
    text = str(exc)
    if "pattern" in text or "identifier" in text:
        return "allowed_identifiers"
    if "validity" in text:
        return "validity_days"
    if "profile" in text or "operator" in text:
        return "profile"
    if "name" in text:
        return "name"
    return None


@console_view
@require_http_methods(["GET", "POST"])
def endpoint_list(request: HttpRequest) -> HttpResponse:
    """``/console/acme/``: the endpoints the user sees; administrators create one here."""
    require(request, Action.VIEW_ACME_ENDPOINT)
    form = EndpointForm(request.POST or None)
    if request.method == "POST":
        require(request, Action.MANAGE_ACME_ENDPOINT)
        if form.is_valid():
            f = form.cleaned_data
            try:
                endpoint = create_endpoint(
                    name=f["name"],
                    ca=f["ca"],
                    profile=f["profile"],
                    actor=actor_of(request),
                    **{k: f[k] for k in POLICY},
                )
            except PKIError as exc:
                add_domain_error(form, exc, _field_of(exc))
            else:
                messages.success(
                    request, f"ACME endpoint {endpoint.name} created: {directory_url(endpoint.name)}"
                )
                return redirect("console:acme_endpoint", name=endpoint.name)
    endpoints = visible_acme_endpoints(request.user).select_related("ca", "profile").order_by("name")
    context = {
        "endpoints": [(e, directory_url(e.name)) for e in endpoints],
        "form": form,
        "may_manage": can(request.user, Action.MANAGE_ACME_ENDPOINT),
    }
    return render(request, "console/acme.html", context, status=400 if form.errors else 200)


@console_view
@require_http_methods(["GET", "POST"])
def endpoint_detail(request: HttpRequest, name: str) -> HttpResponse:  # noqa: PLR0912 - one branch per form
    """``/console/acme/<name>/``: policy (edit), enable/disable, EAB keys, accounts."""
    endpoint = visible_or_404(visible_acme_endpoints(request.user).select_related("ca", "profile"), name=name)
    require(request, Action.VIEW_ACME_ENDPOINT, endpoint)
    which = request.POST.get("form", "")
    policy_form = EndpointPolicyForm(
        request.POST if which == "policy" else None, initial={k: getattr(endpoint, k) for k in POLICY}
    )
    eab_form = EabKeyForm(request.POST if which == "eab" else None)
    new_key = None
    if request.method == "POST":
        actor = actor_of(request)
        try:
            if which == "policy":
                require(request, Action.MANAGE_ACME_ENDPOINT, endpoint)
                if policy_form.is_valid():
                    update_endpoint(
                        endpoint=endpoint,
                        changes={k: policy_form.cleaned_data[k] for k in POLICY},
                        actor=actor,
                    )
                    messages.success(request, f"Policy of {endpoint.name} updated.")
                    return redirect("console:acme_endpoint", name=endpoint.name)
            elif which in ("enable", "disable"):
                require(request, Action.MANAGE_ACME_ENDPOINT, endpoint)
                set_endpoint_enabled(endpoint=endpoint, enabled=which == "enable", actor=actor)
                messages.success(request, f"Endpoint {endpoint.name} {which}d.")
                return redirect("console:acme_endpoint", name=endpoint.name)
            elif which == "eab":
                require(request, Action.MANAGE_EAB_KEY, endpoint)
                if eab_form.is_valid():
                    username = eab_form.cleaned_data["user"]
                    user = User.objects.filter(username=username).first() if username else None
                    if username and user is None:
                        eab_form.add_error("user", f"No user named {username}.")
                    else:
                        new_key = create_eab_key(endpoint=endpoint, user=user, actor=actor)
                        eab_form = EabKeyForm()
            elif which == "revoke_eab":
                require(request, Action.MANAGE_EAB_KEY, endpoint)
                key = visible_or_404(endpoint.eab_keys.all(), key_id=request.POST.get("key_id", ""))
                revoke_eab_key(key=key, actor=actor)
                messages.success(request, f"External account key {key.key_id} revoked.")
                return redirect("console:acme_endpoint", name=endpoint.name)
        except PKIError as exc:
            if which == "policy":
                add_domain_error(policy_form, exc, _field_of(exc))
            elif which == "eab":
                add_domain_error(eab_form, exc)
            else:
                flash_domain_error(request, exc)
    endpoint = AcmeEndpoint.objects.select_related("ca", "profile").get(pk=endpoint.pk)
    context = {
        "endpoint": endpoint,
        "directory": directory_url(endpoint.name),
        "policy_form": policy_form,
        "eab_form": eab_form,
        "new_key": new_key,
        "eab_keys": endpoint.eab_keys.select_related("user").order_by("-created_at")[:200]
        if can(request.user, Action.VIEW_EAB_KEY, endpoint)
        else None,
        "accounts": AcmeAccount.objects.filter(endpoint=endpoint).order_by("-created_at")[:200],
        "may_manage": can(request.user, Action.MANAGE_ACME_ENDPOINT, endpoint),
        "may_mint": can(request.user, Action.MANAGE_EAB_KEY, endpoint),
    }
    response = render(
        request,
        "console/acme_endpoint.html",
        context,
        status=400 if policy_form.errors or eab_form.errors else 200,
    )
    response["Cache-Control"] = "no-store"
    return response
