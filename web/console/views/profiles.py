"""Profiles: list, create and edit through the audited use cases, the change shown as a diff first."""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from pki.access import Action, can
from pki.exceptions import PKIError
from pki.models import Profile
from pki.profile_changes import EDITABLE_FIELDS, create_profile, update_profile
from pki.profiles import ProfilePolicy
from web.console.auth import console_view
from web.console.common import actor_of, add_domain_error, require, visible_or_404
from web.console.forms import NewProfileForm, ProfileForm

FIELDS = [name for name in ProfileForm.base_fields if name in EDITABLE_FIELDS]


def _field_of(exc: PKIError) -> str | None:
    text = str(exc)
    for name, words in (
        ("default_validity_days", "default validity"),
        ("validity_days", "validity"),
        ("key_usage", "key usage"),
        ("key_types", "key type"),
        ("allowed_names", "pattern"),
        ("extended_key_usage", "extended key usage"),
    ):
        if words in text:
            return name
    return None


@console_view
def profile_list(request: HttpRequest) -> HttpResponse:
    """``/console/profiles/``."""
    require(request, Action.VIEW_PROFILE)
    return render(
        request,
        "console/profiles.html",
        {"profiles": Profile.objects.order_by("name"), "may_edit": can(request.user, Action.EDIT_PROFILE)},
    )


@console_view
def profile_detail(request: HttpRequest, name: str) -> HttpResponse:
    """``/console/profiles/<name>/``: the whole policy."""
    require(request, Action.VIEW_PROFILE)
    profile = visible_or_404(Profile.objects.all(), name=name)
    rows = [
        (ProfileForm.base_fields[f].label or f.replace("_", " ").capitalize(), getattr(profile, f))
        for f in FIELDS
    ]
    rows += [("CA profile", profile.is_ca), ("Path length", profile.path_length)]
    return render(
        request,
        "console/profile_detail.html",
        {
            "profile": profile,
            "rows": rows,
            "may_edit": can(request.user, Action.EDIT_PROFILE) and not profile.is_ca,
        },
    )


def _diff(profile: Profile, values: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [
        (name, getattr(profile, name), values[name])
        for name in FIELDS
        if getattr(profile, name) != values[name]
    ]


@console_view
@require_http_methods(["GET", "POST"])
def profile_edit(request: HttpRequest, name: str) -> HttpResponse:
    """``/console/profiles/<name>/edit/``: the form, then the diff (validated as a policy), then
    ``update_profile`` once confirmed."""
    require(request, Action.EDIT_PROFILE)
    profile = visible_or_404(Profile.objects.all(), name=name)
    initial = {name: getattr(profile, name) for name in FIELDS}
    form = ProfileForm(request.POST or None, initial=initial)
    diff: list[tuple[str, Any, Any]] = []
    if request.method == "POST" and form.is_valid():
        values = {name: form.cleaned_data[name] for name in FIELDS}
        diff = _diff(profile, values)
        changes = {name: after for name, _, after in diff}
        if not diff:
            form.add_error(None, "Nothing changed.")
        elif request.POST.get("confirmed") == "yes":
            try:
                update_profile(profile=profile, changes=changes, actor=actor_of(request))
            except PKIError as exc:
                add_domain_error(form, exc, _field_of(exc))
            else:
                messages.success(request, f"Profile {profile.name} updated ({', '.join(changes)}).")
                return redirect("console:profile", name=profile.name)
        else:
            candidate = copy.copy(profile)
            for key, value in changes.items():
                setattr(candidate, key, value)
            try:
                ProfilePolicy.from_profile(candidate)  # the check update_profile makes, before confirming
            except PKIError as exc:
                add_domain_error(form, exc, _field_of(exc))
                diff = []
    status = 400 if form.errors else 200
    return render(
        request, "console/profile_edit.html", {"profile": profile, "form": form, "diff": diff}, status=status
    )


@console_view
@require_http_methods(["GET", "POST"])
def profile_create(request: HttpRequest) -> HttpResponse:
    """``/console/profiles/new/``: ``pki.profile_changes.create_profile`` (administrators)."""
    require(request, Action.EDIT_PROFILE)
    form = NewProfileForm(
        request.POST or None,
        initial={"validity_days": 90, "default_validity_days": 90, "key_types": ["ec", "rsa"]},
    )
    if request.method == "POST" and form.is_valid():
        values = {name: form.cleaned_data[name] for name in FIELDS}
        try:
            profile = create_profile(name=form.cleaned_data["name"], values=values, actor=actor_of(request))
        except PKIError as exc:
            add_domain_error(form, exc, _field_of(exc) or ("name" if "name" in str(exc) else None))
        else:
            messages.success(request, f"Profile {profile.name} created.")
            return redirect("console:profile", name=profile.name)
    return render(request, "console/profile_new.html", {"form": form}, status=400 if form.errors else 200)
