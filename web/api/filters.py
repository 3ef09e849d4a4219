"""The API's query-string filters, one FilterSet per list view.

Each filter is declared once here: django-filter applies it and drf-spectacular documents it in the
OpenAPI schema from the same declaration. A value a filter cannot read is a 400 problem document
naming the parameter (DjangoFilterBackend raises a ValidationError), never a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters as df
from django import forms
from django.db import models
from django.utils.dateparse import parse_datetime

from pki.clock import utcnow
from pki.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Profile,
    RequestState,
    Role,
    RoleGrant,
)

Certificates = models.QuerySet[Certificate]
CERTIFICATE_STATES = [("valid", "valid"), ("expired", "expired"), ("revoked", "revoked")]


class InstantField(df.fields.IsoDateTimeField):
    """An ISO 8601 date-time, or a date (midnight UTC); without an offset, UTC. Returned in UTC."""

    def to_python(self, value: Any) -> dt.datetime | None:
        """Parse ``value``; a ValidationError says what is expected."""
        if value in self.empty_values:
            return None
        raw = str(value)
        try:
            parsed = parse_datetime(raw)
        except ValueError:
            parsed = None
        if parsed is None:
            try:
                parsed = dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), tzinfo=dt.UTC)
            except ValueError:
                raise forms.ValidationError("an ISO 8601 date or date-time", code="invalid") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            return parsed.astimezone(dt.UTC)  # PostgreSQL refuses offsets past ±15:59
        except OverflowError:
            raise forms.ValidationError("out of range", code="invalid") from None


class InstantFilter(df.IsoDateTimeFilter):
    """An ``InstantField`` filter (documented as ``date-time``)."""

    field_class = InstantField


class CertificateRequestFilter(df.FilterSet):
    """``GET /requests/``: by state, CA name and profile name."""

    state = df.ChoiceFilter(choices=RequestState.choices, help_text="request state")
    ca = df.CharFilter(field_name="ca__name", help_text="CA name")
    profile = df.CharFilter(field_name="profile__name", help_text="profile name")

    class Meta:
        model = CertificateRequest
        fields: list[str] = []


class CertificateFilter(df.FilterSet):
    """``GET /certificates/``: the search of ``CertificateQuerySet.matching``, status taken now."""

    ca = df.CharFilter(method="by_ca", help_text="issuing CA name")
    profile = df.CharFilter(method="by_profile", help_text="profile name")
    state = df.ChoiceFilter(choices=CERTIFICATE_STATES, method="by_state", help_text="status now")
    expiring_before = InstantFilter(method="by_expiry", help_text="valid now, notAfter before")
    q = df.CharFilter(method="by_text", help_text="search in subject and SANs")
    serial = df.CharFilter(method="by_serial", help_text="serial number (hex)")

    class Meta:
        model = Certificate
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """One ``now`` for every filter of the request."""
        super().__init__(*args, **kwargs)
        self.now = utcnow()

    # Names become ids first, so the page query filters on the indexed column alone and an
    # index on (ca_id, id) serves "ORDER BY id DESC LIMIT n" without a sort at any size.
    def by_ca(self, qs: Certificates, name: str, value: str) -> Certificates:
        """The CA's id, or nothing when no CA has that name."""
        ca_id = CertificateAuthority.objects.filter(name=value).values_list("pk", flat=True).first()
        return qs.filter(ca_id=ca_id) if ca_id is not None else qs.none()

    def by_profile(self, qs: Certificates, name: str, value: str) -> Certificates:
        """The profile's id, or nothing when no profile has that name."""
        profile_id = Profile.objects.filter(name=value).values_list("pk", flat=True).first()
        return qs.filter(profile_id=profile_id) if profile_id is not None else qs.none()

    def by_state(self, qs: Certificates, name: str, value: str) -> Certificates:
        """Valid, expired or revoked now."""
        return qs.matching(now=self.now, state=value)  # type: ignore[attr-defined,no-any-return]

    def by_expiry(self, qs: Certificates, name: str, value: dt.datetime) -> Certificates:
        """Valid now and expiring before ``value``."""
        return qs.matching(now=self.now, expiring_before=value)  # type: ignore[attr-defined,no-any-return]

    def by_text(self, qs: Certificates, name: str, value: str) -> Certificates:
        """A substring of the subject, a SAN or the serial."""
        return qs.matching(now=self.now, q=value)  # type: ignore[attr-defined,no-any-return]

    def by_serial(self, qs: Certificates, name: str, value: str) -> Certificates:
        """A hex serial, colons allowed."""
        return qs.matching(now=self.now, serial=value)  # type: ignore[attr-defined,no-any-return]


class AuditEventFilter(df.FilterSet):
    """``GET /audit-events/`` and its export: exact fields and a half-open time window."""

    action = df.CharFilter(help_text="e.g. certificate.issued")
    actor = df.CharFilter(help_text="who acted (user name, token prefix, system)")
    object_type = df.CharFilter(help_text="the object's kind, e.g. certificate")
    object_id = df.CharFilter(help_text="the object's id")
    since = InstantFilter(field_name="timestamp", lookup_expr="gte", help_text="at or after")
    until = InstantFilter(field_name="timestamp", lookup_expr="lt", help_text="before")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


class RoleGrantFilter(df.FilterSet):
    """``GET /grants/``: by user name, role and CA name."""

    user = df.CharFilter(field_name="user__username", help_text="user name")
    role = df.ChoiceFilter(choices=Role.choices, help_text="role")
    ca = df.CharFilter(field_name="ca__name", help_text="CA name")

    class Meta:
        model = RoleGrant
        fields: list[str] = []
