"""Django admin registrations: a read-mostly view of the PKI; changes go through ``pki`` use cases."""

from __future__ import annotations

from django.contrib import admin

from pki.models import (
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
