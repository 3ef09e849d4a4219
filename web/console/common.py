"""What every console view shares: the actor, permission checks, domain errors, keyset pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import Http404, HttpRequest

from pki.access import Action, can
from pki.exceptions import CAUnavailable, InvalidCSR, NameNotAllowed, PKIError, SigningUnavailable, WeakKey

M = TypeVar("M", bound=models.Model)
PAGE_SIZE = 50


def actor_of(request: HttpRequest) -> str:
    """The audit actor of a console action: the signed-in user's name (as for the API's sessions)."""
    return request.user.get_username()


def user_of(request: HttpRequest) -> User:
    """The signed-in user (console views run only for them)."""
    assert isinstance(request.user, User)
    return request.user


def require(request: HttpRequest, action: Action, obj: object = None) -> None:
    """Refuse (403) an action the user's roles do not allow on an object they may see."""
    if not can(request.user, action, obj):
        raise PermissionDenied(f"your roles do not allow {action.value.replace('_', ' ')}")


def visible_or_404(qs: models.QuerySet[M], **lookup: Any) -> M:
    """The object of a visibility-narrowed queryset; objects outside what a role sees are 404."""
    if any(isinstance(v, str) and "\x00" in v for v in lookup.values()):
        raise Http404("no such object")  # PostgreSQL text cannot hold NUL: nothing has that name
    try:
        obj = qs.filter(**lookup).first()
    except (ValueError, ValidationError):  # a malformed id (e.g. "abc" for an integer key)
        obj = None
    if obj is None:
        raise Http404("no such object, or not one your roles show you")
    return obj


def domain_error(exc: PKIError) -> str:
    """A domain error in words for the page (what the API puts in a problem's ``detail``)."""
    if isinstance(exc, SigningUnavailable):
        tail = (
            f" Request {exc.request_id} is stored and stays approved; try again shortly."
            if exc.request_id
            else ""
        )
        return f"No signing worker answered: {exc}.{tail}"
    return str(exc)


def submission_field(exc: PKIError) -> str | None:
    """Which field of a CSR submission a domain error concerns (None: the form as a whole)."""
    if isinstance(exc, InvalidCSR | WeakKey | NameNotAllowed):
        return "csr"
    if isinstance(exc, CAUnavailable):
        return "ca"
    if "validity" in str(exc):
        return "validity_days"
    return None


def add_domain_error(form: forms.Form, exc: PKIError, field: str | None = None) -> None:
    """Show a domain error next to ``field`` (or at the top of the form)."""
    form.add_error(field if field in form.fields else None, domain_error(exc))


def flash_domain_error(request: HttpRequest, exc: PKIError) -> None:
    """Show a domain error of an action without a form of its own at the top of the next page."""
    messages.error(request, domain_error(exc))


@dataclass(frozen=True)
class Page:
    """One keyset page: newest first, ``?after=<id>`` for the next (an index scan at any size)."""

    items: Sequence[Any]
    next_url: str | None
    first_url: str | None


def keyset_page(request: HttpRequest, qs: models.QuerySet[M], *, size: int = PAGE_SIZE) -> Page:
    """``WHERE id < after ORDER BY id DESC LIMIT size+1``: no OFFSET and no COUNT, at any size."""
    after = request.GET.get("after", "")
    if after.isdigit() and len(after) <= 18:
        qs = qs.filter(pk__lt=int(after))
    rows = list(qs.order_by("-pk")[: size + 1])
    params = {k: v for k, v in request.GET.items() if k != "after" and v}
    next_url = None
    if len(rows) > size:
        rows = rows[:size]
        next_url = "?" + urlencode({**params, "after": rows[-1].pk})
    first_url = ("?" + urlencode(params)) if after else None
    return Page(items=rows, next_url=next_url, first_url=first_url)


class DateTimeInput(forms.DateTimeInput):
    """A browser date-and-time picker (UTC)."""

    input_type = "datetime-local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A picker's naive time read as UTC (the console shows every time in UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
