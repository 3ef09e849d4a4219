"""Access: users and their role grants, API tokens (the secret shown once), second factors."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.models import User
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from django_otp.plugins.otp_totp.models import TOTPDevice

from pki import tokens, users
from pki.access import Action, can, grant_role, revoke_grant, visible_grants
from pki.clock import utcnow
from pki.exceptions import PKIError
from pki.models import ApiToken, RoleGrant
from web.console.auth import console_view
from web.console.common import (
    actor_of,
    add_domain_error,
    flash_domain_error,
    require,
    user_of,
    visible_or_404,
)
from web.console.forms import GrantForm, PasswordSetForm, TokenForm, UserForm


def _tokens_of(user_id: int) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user_id=user_id).order_by("-created_at")[:100])


@console_view
@require_http_methods(["GET", "POST"])
def access(request: HttpRequest) -> HttpResponse:
    """``/console/access/``: every user and grant for administrators and auditors, one's own
    otherwise; administrators create users here."""
    reads_all = can(request.user, Action.MANAGE_ACCESS) or can(request.user, Action.VIEW_AUDIT)
    form = UserForm(request.POST or None)
    if request.method == "POST":
        require(request, Action.MANAGE_ACCESS)
        if form.is_valid():
            f = form.cleaned_data
            try:
                created = users.create_user(
                    username=f["username"], email=f["email"], password=f["password"], actor=actor_of(request)
                )
            except PKIError as exc:
                add_domain_error(
                    form,
                    exc,
                    "password" if "password" in str(exc).lower() or "short" in str(exc) else "username",
                )
            else:
                messages.success(request, f"User {created.username} created; grant a role below.")
                return redirect("console:user", pk=created.pk)
    people = None
    if reads_all:
        grants = Prefetch("kmi_grants", queryset=RoleGrant.objects.select_related("ca", "profile"))
        people = User.objects.order_by("username").prefetch_related(grants)[:500]
    totp_users = set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
    context = {
        "people": people,
        "own_grants": visible_grants(request.user).filter(user_id=user_of(request).pk),
        "totp_users": totp_users,
        "may_manage": can(request.user, Action.MANAGE_ACCESS),
        "form": form,
    }
    return render(request, "console/access.html", context, status=400 if form.errors else 200)


@console_view
@require_http_methods(["GET", "POST"])
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/console/access/users/<id>/``: grants (grant and revoke), tokens, account and second factor."""
    if pk != request.user.pk and not (
        can(request.user, Action.MANAGE_ACCESS) or can(request.user, Action.VIEW_AUDIT)
    ):
        require(request, Action.MANAGE_ACCESS)
    person = visible_or_404(User.objects.all(), pk=pk)
    grant_form = GrantForm(request.POST if request.POST.get("form") == "grant" else None)
    password_form = PasswordSetForm(request.POST if request.POST.get("form") == "password" else None)
    if request.method == "POST":
        require(request, Action.MANAGE_ACCESS)
        done = _user_action(request, person, grant_form, password_form)
        if done:
            return redirect("console:user", pk=person.pk)
    context = {
        "person": person,
        "grants": visible_grants(request.user).filter(user_id=person.pk),
        "tokens": _tokens_of(person.pk)
        if can(request.user, Action.MANAGE_ACCESS) or pk == request.user.pk
        else None,
        "totp": users.totp_device(person),
        "needs_totp": users.second_factor_required(person),
        "may_manage": can(request.user, Action.MANAGE_ACCESS),
        "grant_form": grant_form,
        "password_form": password_form,
        "now": utcnow(),
    }
    status = 400 if grant_form.errors or password_form.errors else 200
    return render(request, "console/user_detail.html", context, status=status)


def _user_action(
    request: HttpRequest, person: User, grant_form: GrantForm, password_form: PasswordSetForm
) -> bool:
    """Run the one action the POST names; True when it succeeded (errors go onto the forms)."""
    which, actor = request.POST.get("form"), actor_of(request)
    try:
        if which == "grant":
            if not grant_form.is_valid():
                return False
            f = grant_form.cleaned_data
            grant_role(user=person, role=f["role"], ca=f["ca"], profile=f["profile"], actor=actor)
            messages.success(
                request, f"{person.username} is now {f['role']}{' on ' + f['ca'].name if f['ca'] else ''}."
            )
        elif which == "revoke_grant":
            grant = visible_or_404(RoleGrant.objects.filter(user=person), pk=request.POST.get("grant", "0"))
            revoke_grant(grant=grant, actor=actor)
            messages.success(request, f"Grant taken away from {person.username}.")
        elif which == "password":
            if not password_form.is_valid():
                return False
            users.set_password(user=person, password=password_form.cleaned_data["password"], actor=actor)
            messages.success(request, f"New password set for {person.username}.")
        elif which in ("deactivate", "activate"):
            users.set_user_active(user=person, active=which == "activate", actor=actor)
            messages.success(request, f"{person.username} {which}d.")
        elif which == "reset_totp":
            count = users.reset_totp(user=person, actor=actor)
            messages.success(
                request,
                f"{count} TOTP device(s) removed; {person.username} enrols a new one at the next sign-in.",
            )
        elif which == "revoke_token":
            token = visible_or_404(ApiToken.objects.filter(user=person), pk=request.POST.get("token", "0"))
            tokens.revoke_token(token=token, actor=actor)
            messages.success(request, f"Token kmi_{token.prefix}_… revoked.")
        else:
            return False
    except PKIError as exc:
        form = grant_form if which == "grant" else password_form if which == "password" else None
        if form is not None:
            add_domain_error(form, exc)
            return False
        flash_domain_error(request, exc)
    return True


@console_view
@require_http_methods(["GET", "POST"])
def my_tokens(request: HttpRequest) -> HttpResponse:
    """``/console/tokens/``: one's own API tokens; a new token's text is shown on this response only."""
    require(request, Action.MANAGE_OWN_TOKENS)
    form = TokenForm(request.POST if request.POST.get("form") == "create" else None)
    issued = None
    if request.method == "POST":
        if request.POST.get("form") == "revoke":
            token = visible_or_404(
                ApiToken.objects.filter(user=user_of(request)), pk=request.POST.get("token", "0")
            )
            try:
                tokens.revoke_token(token=token, actor=actor_of(request))
            except PKIError as exc:
                flash_domain_error(request, exc)
            else:
                messages.success(request, f"Token kmi_{token.prefix}_… revoked.")
            return redirect("console:tokens")
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                issued = tokens.create_token(
                    user=user_of(request),
                    name=form.cleaned_data["name"],
                    expires_at=utcnow() + dt.timedelta(days=days) if days else None,
                    actor=actor_of(request),
                )
            except PKIError as exc:
                add_domain_error(form, exc)
            else:
                form = TokenForm()
    context = {"form": form, "issued": issued, "tokens": _tokens_of(user_of(request).pk), "now": utcnow()}
    response = render(request, "console/tokens.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response
