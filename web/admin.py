"""Django admin registrations: a read-mostly view of the PKI; changes go through ``pki`` use cases."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from pki.access import grant_role, revoke_grant
from pki.clock import utcnow
from pki.exceptions import PKIError
from pki.models import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeExternalAccountKey,
    AcmeOrder,
    ApiToken,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Key,
    KeyDelivery,
    Profile,
    RoleGrant,
)
from pki.tokens import create_token, revoke_token


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(admin.ModelAdmin[CertificateAuthority]):
    """CAs are created with ``init_ca``; the admin shows them."""

    list_display = ("name", "parent", "state", "path_length", "created_at")
    readonly_fields = (
        "name",
        "parent",
        "key",
        "certificate",
        "path_length",
        "name_constraints",
        "created_at",
    )


@admin.register(Key)
class KeyAdmin(admin.ModelAdmin[Key]):
    """Key metadata only; private material never appears here."""

    list_display = ("id", "key_type", "purpose", "backend", "state", "created_at")
    list_filter = ("key_type", "purpose", "state", "backend")
    exclude = ("handle",)
    readonly_fields = tuple(f.name for f in Key._meta.fields if f.name != "handle")


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin[Profile]):
    """Profiles are policy data an administrator may edit."""

    list_display = ("name", "validity_days", "requires_approval", "is_ca")


@admin.register(CertificateRequest)
class CertificateRequestAdmin(admin.ModelAdmin[CertificateRequest]):
    """The approval queue."""

    list_display = ("id", "subject", "ca", "profile", "state", "requested_by", "created_at")
    list_filter = ("state", "ca", "profile")
    readonly_fields = tuple(f.name for f in CertificateRequest._meta.fields)


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin[Certificate]):
    """Every issued certificate, searchable by subject, SAN and serial."""

    list_display = ("serial", "subject", "ca", "profile", "not_after", "revoked_at")
    list_filter = ("ca", "profile", "is_ca")
    search_fields = ("serial", "subject", "san_text", "fingerprint_sha256")
    readonly_fields = tuple(f.name for f in Certificate._meta.fields)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """The append-only audit trail."""

    list_display = ("timestamp", "actor", "action", "object_type", "object_id")
    list_filter = ("action",)
    search_fields = ("object_id", "actor")
    readonly_fields = tuple(f.name for f in AuditEvent._meta.fields)

    def has_add_permission(self, request: object) -> bool:  # type: ignore[override]
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:  # type: ignore[override]
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:  # type: ignore[override]
        return False


# --- access: role grants and API tokens (changes go through pki.access / pki.tokens) --------------
@admin.register(RoleGrant)
class RoleGrantAdmin(admin.ModelAdmin[RoleGrant]):
    """Role grants; adding and deleting call the audited use cases."""

    list_display = ("user", "role", "ca", "profile", "granted_by", "created_at")
    list_filter = ("role", "ca")
    fields = ("user", "role", "ca", "profile")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:  # type: ignore[override]
        return False  # a grant is given or taken away, never edited

    def save_model(self, request: HttpRequest, obj: RoleGrant, form: Any, change: bool) -> None:
        try:
            saved = grant_role(
                user=obj.user, role=obj.role, ca=obj.ca, profile=obj.profile, actor=_actor(request)
            )
        except PKIError as exc:
            raise ValidationError(str(exc)) from exc
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: RoleGrant) -> None:
        revoke_grant(grant=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RoleGrant]) -> None:
        for grant in queryset:
            revoke_grant(grant=grant, actor=_actor(request))


class ApiTokenForm(forms.ModelForm):  # type: ignore[type-arg]
    """Choose a user, a name and an optional lifetime; the secret is generated."""

    expires_days = forms.IntegerField(min_value=1, max_value=3650, required=False, label="expires in (days)")

    class Meta:
        model = ApiToken
        fields = ("user", "name")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """API tokens: created here (the token is shown once, in a message) and revoked by an action."""

    list_display = ("prefix", "user", "name", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    actions = ("revoke_tokens",)
    form = ApiTokenForm

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return (
            "user",
            "name",
            "prefix",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "revoked_by",
        )

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:
            return ("user", "name", "expires_days")
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:  # type: ignore[override]
        return False  # revoke instead: the row stays for the audit trail

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        days = form.cleaned_data.get("expires_days")
        now = utcnow()
        issued = create_token(
            user=obj.user,
            name=obj.name,
            expires_at=now + dt.timedelta(days=days) if days else None,
            actor=_actor(request),
            now=now,
        )
        obj.pk = issued.token.pk
        messages.warning(request, f"New API token (shown once, copy it now): {issued.text}")

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            revoke_token(token=token, actor=_actor(request))
        messages.success(request, f"revoked {queryset.count()} token(s)")


@admin.register(KeyDelivery)
class KeyDeliveryAdmin(admin.ModelAdmin[KeyDelivery]):
    """Server-generated keys and whether their one download happened."""

    list_display = ("id", "key", "requester", "created_at", "delivered_at")
    readonly_fields = tuple(f.name for f in KeyDelivery._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


# --- ACME -------------------------------------------------------------------------------------


@admin.register(AcmeEndpoint)
class AcmeEndpointAdmin(admin.ModelAdmin[AcmeEndpoint]):
    """ACME endpoints: their CA, profile and policy (created with ``create_acme_endpoint``)."""

    list_display = ("name", "ca", "profile", "eab_required", "enabled", "created_at")
    list_filter = ("eab_required", "enabled")


@admin.register(AcmeExternalAccountKey)
class AcmeExternalAccountKeyAdmin(admin.ModelAdmin[AcmeExternalAccountKey]):
    """EAB keys; the HMAC key itself is never shown (``create_eab_key`` prints it once)."""

    list_display = ("key_id", "endpoint", "user", "created_by", "created_at", "bound_at")
    exclude = ("hmac_key",)
    readonly_fields = ("key_id", "endpoint", "created_by", "created_at", "bound_at")

    def has_add_permission(self, request: object) -> bool:  # type: ignore[override]
        return False


@admin.register(AcmeAccount)
class AcmeAccountAdmin(admin.ModelAdmin[AcmeAccount]):
    """ACME accounts (read-only; clients manage them)."""

    list_display = ("token", "endpoint", "status", "created_at")
    list_filter = ("endpoint", "status")
    search_fields = ("token", "jwk_thumbprint")
    readonly_fields = tuple(f.name for f in AcmeAccount._meta.fields)


@admin.register(AcmeOrder)
class AcmeOrderAdmin(admin.ModelAdmin[AcmeOrder]):
    """ACME orders (read-only)."""

    list_display = ("token", "account", "status", "created_at", "expires")
    list_filter = ("status",)
    readonly_fields = tuple(f.name for f in AcmeOrder._meta.fields)


@admin.register(AcmeAuthorization)
class AcmeAuthorizationAdmin(admin.ModelAdmin[AcmeAuthorization]):
    """ACME authorizations (read-only)."""

    list_display = ("token", "identifier_type", "identifier_value", "wildcard", "status", "expires")
    list_filter = ("status", "identifier_type")
    readonly_fields = tuple(f.name for f in AcmeAuthorization._meta.fields)


@admin.register(AcmeChallenge)
class AcmeChallengeAdmin(admin.ModelAdmin[AcmeChallenge]):
    """ACME challenges (read-only)."""

    list_display = ("url_token", "type", "status", "validated_at")
    list_filter = ("type", "status")
    readonly_fields = tuple(f.name for f in AcmeChallenge._meta.fields)
