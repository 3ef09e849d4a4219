"""Django admin registrations: a read-mostly view of the PKI; changes go through ``pki`` use cases."""

from __future__ import annotations

from django.contrib import admin

from pki.models import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeExternalAccountKey,
    AcmeOrder,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Key,
    Profile,
)


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
