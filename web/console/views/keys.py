"""Keys: NIST SP 800-57 states and backends; deactivate or destroy with a typed confirmation."""

from __future__ import annotations

import datetime as dt
import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from pki.access import Action, can, visible_certificates, visible_keys
from pki.exceptions import PKIError
from pki.key_controls import KeyAction, change_key_state
from pki.lifecycle import deactivate_key
from pki.models import Key, KeyState
from pki.models.key import KeyPurpose
from web.console.auth import console_view
from web.console.common import PAGE_SIZE, actor_of, add_domain_error, require, visible_or_404
from web.console.forms import ConfirmForm


@console_view
def key_list(request: HttpRequest) -> HttpResponse:
    """``/console/keys/``: newest first, ``?state=`` and ``?purpose=``; pages by creation time."""
    require(request, Action.VIEW_KEY)
    qs = visible_keys(request.user).defer("handle", "public_key_der")
    state, purpose = request.GET.get("state", ""), request.GET.get("purpose", "")
    if state:
        qs = qs.filter(state=state) if state in KeyState.values else qs.none()
    if purpose:
        qs = qs.filter(purpose=purpose) if purpose in KeyPurpose.values else qs.none()
    before = parse_datetime(request.GET.get("before", "") or "")
    if before is not None:
        qs = qs.filter(created_at__lt=before if before.tzinfo else before.replace(tzinfo=dt.UTC))
    rows = list(qs.order_by("-created_at")[: PAGE_SIZE + 1])
    next_before = rows[PAGE_SIZE - 1].created_at.isoformat() if len(rows) > PAGE_SIZE else None
    context = {
        "keys": rows[:PAGE_SIZE],
        "next_before": next_before,
        "state": state,
        "purpose": purpose,
        "states": KeyState.choices,
        "purposes": KeyPurpose.values,
    }
    return render(request, "console/keys.html", context)


def _key(request: HttpRequest, pk: uuid.UUID) -> Key:
    return visible_or_404(visible_keys(request.user).prefetch_related("authorities"), pk=pk)


def _confirm_word(key: Key) -> str:
    return key.spki_sha256[:12]


def _detail(
    request: HttpRequest, key: Key, *, form: ConfirmForm | None = None, which: str = "", status: int = 200
) -> HttpResponse:
    word = _confirm_word(key)
    context = {
        "key": key,
        "authorities": list(key.authorities.order_by("name")),
        "certificates": list(
            visible_certificates(request.user, key.certificates.all())
            .order_by("-pk")
            .only("pk", "serial", "subject", "not_after")[:20]
        ),
        "may_manage": can(request.user, Action.MANAGE_KEY, key),
        "word": word,
        "deactivate_form": form if which == "deactivate" else ConfirmForm(expected=word),
        "destroy_form": form if which == "destroy" else ConfirmForm(expected=word),
        "live": key.state not in (KeyState.DESTROYED,),
    }
    return render(request, "console/key_detail.html", context, status=status)


@console_view
def key_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """``/console/keys/<id>/``: metadata only (never a handle), what uses the key, its controls."""
    return _detail(request, _key(request, pk))


@console_view
@require_POST
def key_deactivate(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """``pki.lifecycle.deactivate_key`` after the key's fingerprint is typed (administrators)."""
    key = _key(request, pk)
    require(request, Action.MANAGE_KEY, key)
    form = ConfirmForm(request.POST, expected=_confirm_word(key))
    if form.is_valid():
        try:
            deactivate_key(key=key, reason=form.cleaned_data["reason"], actor=actor_of(request))
        except PKIError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, f"Key {key.spki_sha256[:16]}… deactivated.")
            return redirect("console:key", pk=key.pk)
    return _detail(request, key, form=form, which="deactivate", status=400)


@console_view
@require_POST
def key_destroy(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """``change_key_state(destroy)`` after the typed confirmation, as the API and the command line:
    erased where the key's material lives; a CA key's first administrator asks, a different one
    approves (and the key is erased then)."""
    key = _key(request, pk)
    require(request, Action.MANAGE_KEY, key)
    form = ConfirmForm(request.POST, expected=_confirm_word(key))
    if form.is_valid():
        try:
            outcome = change_key_state(
                key=key,
                action=KeyAction.DESTROY,
                reason=form.cleaned_data["reason"],
                actor=actor_of(request),
                user=request.user,  # type: ignore[arg-type]  # signed in: console_view
            )
        except PKIError as exc:
            add_domain_error(form, exc)
        else:
            if outcome.waiting is not None:
                messages.success(
                    request,
                    f"Destruction of CA key {key.spki_sha256[:16]}… requested: a different "
                    "administrator confirms it the same way.",
                )
            else:
                messages.success(request, f"Key {key.spki_sha256[:16]}… destroyed; its record stays.")
            return redirect("console:key", pk=key.pk)
    return _detail(request, key, form=form, which="destroy", status=400)
