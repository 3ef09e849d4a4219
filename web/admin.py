"""Django admin registrations: a read-only view of the PKI records; the few changes it offers
(role grants, API tokens, ACME endpoints, enabling and disabling CAs) call the audited use cases.
Certificates, requests, keys, CAs, profiles and audit rows are never added, edited or deleted
here (issue 10 §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from pki.access import grant_role, revoke_grant
from pki.acme.endpoints import (
    ENDPOINT_NAME,
    POLICY_FIELDS,
    check_policy,
    create_eab_key,
    create_endpoint,
    identifier_patterns,
    revoke_eab_key,
    set_endpoint_enabled,
    update_endpoint,
)
from pki.authorities import set_ca_state
from pki.clock import utcnow
from pki.exceptions import PKIError, PolicyViolation
from pki.models import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeExternalAccountKey,
    AcmeOrder,
    ApiToken,
    AuditCheckpoint,
    AuditEvent,
    CAState,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Key,
    KeyDelivery,
    Profile,
    RoleGrant,
)
from pki.tokens import create_token, revoke_token


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shown, never added, changed or deleted here (issue 10 §3: no back door past the use cases).

    A PKI record changes only through the audited use case that owns it (the console, the API,
    the CLI); the database refuses to delete certificates and audit rows in any case.
    """

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(ReadOnlyAdmin):
    """CAs are created with ``init_ca`` or the console; enabling and disabling are audited actions."""

    list_display = ("name", "parent", "state", "path_length", "created_at", "console_link")
    readonly_fields = (
        "name",
        "parent",
        "key",
        "certificate",
        "state",
        "path_length",
        "name_constraints",
        "created_at",
    )
    actions = ("disable_cas", "enable_cas")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The list's actions need it; the detail page stays read-only (every field is).
        return obj is None and bool(request.user.is_superuser)

    @admin.display(description="console")
    def console_link(self, obj: CertificateAuthority) -> str:
        return format_html('<a href="{}">manage</a>', reverse("console:ca", args=[obj.name]))

    def _set_state(
        self, request: HttpRequest, queryset: QuerySet[CertificateAuthority], state: CAState
    ) -> None:
        for ca in queryset:
            try:
                set_ca_state(ca=ca, state=state, actor=_actor(request), reason="Django admin")
            except PKIError as exc:
                messages.error(request, f"{ca.name}: {exc}")
            else:
                messages.success(request, f"{ca.name}: {state.label.lower()}")

    @admin.action(description="Disable the selected CAs (audited)")
    def disable_cas(self, request: HttpRequest, queryset: QuerySet[CertificateAuthority]) -> None:
        self._set_state(request, queryset, CAState.DISABLED)

    @admin.action(description="Enable the selected CAs (audited)")
    def enable_cas(self, request: HttpRequest, queryset: QuerySet[CertificateAuthority]) -> None:
        self._set_state(request, queryset, CAState.ACTIVE)


@admin.register(Key)
class KeyAdmin(ReadOnlyAdmin):
    """Key metadata only; private material never appears here (states change with ``key_state``)."""

    list_display = ("id", "key_type", "purpose", "backend", "state", "created_at")
    list_filter = ("key_type", "purpose", "state", "backend")
    exclude = ("handle",)
    readonly_fields = tuple(f.name for f in Key._meta.fields if f.name != "handle")


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdmin):
    """Profiles are policy: created and edited in the console, where every change is audited."""

    list_display = ("name", "validity_days", "requires_approval", "is_ca", "console_link")
    readonly_fields = tuple(f.name for f in Profile._meta.fields)

    @admin.display(description="console")
    def console_link(self, obj: Profile) -> str:
        return format_html('<a href="{}">edit</a>', reverse("console:profile_edit", args=[obj.name]))


@admin.register(CertificateRequest)
class CertificateRequestAdmin(ReadOnlyAdmin):
    """The approval queue (approve and reject in the console or the API)."""

    list_display = ("id", "subject", "ca", "profile", "state", "requested_by", "created_at")
    list_filter = ("state", "ca", "profile")
    readonly_fields = tuple(f.name for f in CertificateRequest._meta.fields)


@admin.register(Certificate)
class CertificateAdmin(ReadOnlyAdmin):
    """Every issued certificate, searchable by subject, SAN and serial (revoke in the console)."""

    list_display = ("serial", "subject", "ca", "profile", "not_after", "revoked_at")
    list_filter = ("ca", "profile", "is_ca")
    # search_text holds subject, SANs and serial (trigram-indexed on PostgreSQL); a full SHA-256
    # fingerprint is matched exactly, on its unique index.
    search_fields = ("search_text",)
    search_help_text = "part of the subject, a SAN or the serial; or a whole SHA-256 fingerprint"
    readonly_fields = tuple(f.name for f in Certificate._meta.fields if f.name != "search_text")
    exclude = ("search_text",)
    # COUNT(*) over millions of rows on every search page is what makes an admin slow.
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Certificate], search_term: str
    ) -> tuple[QuerySet[Certificate], bool]:
        """A 64-hex-digit term is a fingerprint (colons allowed); anything else searches search_text."""
        fingerprint = search_term.strip().replace(":", "").lower()
        if len(fingerprint) == 64 and all(c in "0123456789abcdef" for c in fingerprint):
            return queryset.filter(fingerprint_sha256=fingerprint), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The append-only audit trail."""

    list_display = ("timestamp", "actor", "action", "object_type", "object_id")
    list_filter = ("action",)
    search_fields = ("object_id", "actor")
    readonly_fields = tuple(f.name for f in AuditEvent._meta.fields)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    """Signed audit checkpoints (``checkpoint_audit``; verified by ``verify_audit``)."""

    list_display = ("number", "created_at", "events", "digest")
    readonly_fields = tuple(f.name for f in AuditCheckpoint._meta.fields)


# --- access: role grants and API tokens (changes go through pki.access / pki.tokens) --------------
@admin.register(RoleGrant)
class RoleGrantAdmin(admin.ModelAdmin[RoleGrant]):
    """Role grants; adding and deleting call the audited use cases."""

    list_display = ("user", "role", "ca", "profile", "granted_by", "created_at")
    list_filter = ("role", "ca")
    fields = ("user", "role", "ca", "profile")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
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

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
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
class KeyDeliveryAdmin(ReadOnlyAdmin):
    """Server-generated keys and whether their one download happened."""

    list_display = ("id", "key", "requester", "created_at", "delivered_at")
    readonly_fields = tuple(f.name for f in KeyDelivery._meta.fields)


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


# --- ACME -------------------------------------------------------------------------------------


class AcmeEndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    """Checks the policy as the use cases will (patterns, profile, validity, key types)."""

    terms_of_service = forms.URLField(required=False, max_length=200, assume_scheme="https")
    website = forms.URLField(required=False, max_length=200, assume_scheme="https")

    class Meta:
        model = AcmeEndpoint
        fields = (
            "name",
            "ca",
            "profile",
            "allowed_identifiers",
            "eab_required",
            "validity_days",
            "key_types",
            "terms_of_service",
            "website",
            "caa_identities",
            "enabled",
        )

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        profile = data.get("profile") or getattr(self.instance, "profile", None)
        try:
            if self.instance.pk is None and not ENDPOINT_NAME.match(data.get("name") or ""):
                raise PolicyViolation("name: 1-64 of a-z, 0-9 and -, starting with a letter or digit")
            for field in ("allowed_identifiers", "key_types", "caa_identities"):
                if data.get(field) is None:
                    data[field] = []
                if not isinstance(data[field], list):
                    raise PolicyViolation(f"{field} must be a JSON list")
            data["allowed_identifiers"] = identifier_patterns(data.get("allowed_identifiers", []))
            if profile is not None:
                check_policy(profile, data.get("validity_days"), data.get("key_types", []))
        except PolicyViolation as exc:
            raise ValidationError(str(exc)) from exc
        return data


@admin.register(AcmeEndpoint)
class AcmeEndpointAdmin(admin.ModelAdmin[AcmeEndpoint]):
    """ACME endpoints: created, changed, disabled and given EAB keys through the audited use cases."""

    list_display = ("name", "ca", "profile", "eab_required", "enabled", "created_at")
    list_filter = ("eab_required", "enabled")
    form = AcmeEndpointForm
    actions = ("disable_endpoints", "enable_endpoints", "mint_eab_keys")

    def get_readonly_fields(self, request: HttpRequest, obj: AcmeEndpoint | None = None) -> tuple[str, ...]:
        return ("created_at",) if obj is None else ("name", "ca", "profile", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # disable instead: accounts and orders refer to it

    def save_model(self, request: HttpRequest, obj: AcmeEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            made = create_endpoint(
                name=obj.name,
                ca=obj.ca,
                profile=obj.profile,
                allowed_identifiers=data["allowed_identifiers"],
                eab_required=data["eab_required"],
                validity_days=data["validity_days"],
                key_types=data["key_types"],
                terms_of_service=data["terms_of_service"],
                website=data["website"],
                caa_identities=data["caa_identities"],
                actor=_actor(request),
            )
            if not obj.enabled:
                made = set_endpoint_enabled(endpoint=made, enabled=False, actor=_actor(request))
            obj.pk, obj.created_at = made.pk, made.created_at
            return
        changes = {f: data[f] for f in form.changed_data if f in POLICY_FIELDS}
        saved = AcmeEndpoint.objects.get(pk=obj.pk)
        if changes:
            saved = update_endpoint(endpoint=saved, changes=changes, actor=_actor(request))
        if "enabled" in form.changed_data:
            set_endpoint_enabled(endpoint=saved, enabled=obj.enabled, actor=_actor(request))

    @admin.action(description="Disable the selected endpoints")
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[AcmeEndpoint]) -> None:
        for endpoint in queryset:
            set_endpoint_enabled(endpoint=endpoint, enabled=False, actor=_actor(request))

    @admin.action(description="Enable the selected endpoints")
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[AcmeEndpoint]) -> None:
        for endpoint in queryset:
            set_endpoint_enabled(endpoint=endpoint, enabled=True, actor=_actor(request))

    @admin.action(description="Mint an EAB key for each selected endpoint (shown once)")
    def mint_eab_keys(self, request: HttpRequest, queryset: QuerySet[AcmeEndpoint]) -> None:
        for endpoint in queryset:
            row, hmac_key = create_eab_key(endpoint=endpoint, actor=_actor(request))
            messages.warning(
                request,
                f"EAB key for {endpoint.name} (shown once, copy it now): "
                f"--eab-kid {row.key_id} --eab-hmac-key {hmac_key}",
            )


@admin.register(AcmeExternalAccountKey)
class AcmeExternalAccountKeyAdmin(admin.ModelAdmin[AcmeExternalAccountKey]):
    """EAB keys; the HMAC key is never shown (minted by an endpoint action); deleting revokes."""

    list_display = ("key_id", "endpoint", "user", "created_by", "created_at", "bound_at")
    exclude = ("sealed_hmac_key", "kek_id")
    readonly_fields = ("key_id", "endpoint", "created_by", "created_at", "bound_at")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AcmeExternalAccountKey | None = None) -> bool:
        bound = obj is not None and obj.bound_at is not None
        return not bound and super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: AcmeExternalAccountKey) -> None:
        revoke_eab_key(key=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AcmeExternalAccountKey]) -> None:
        for key in queryset:
            try:
                revoke_eab_key(key=key, actor=_actor(request))
            except PKIError as exc:
                messages.error(request, str(exc))


@admin.register(AcmeAccount)
class AcmeAccountAdmin(ReadOnlyAdmin):
    """ACME accounts (read-only; clients manage them)."""

    list_display = ("token", "endpoint", "status", "created_at")
    list_filter = ("endpoint", "status")
    search_fields = ("token", "jwk_thumbprint")
    readonly_fields = tuple(f.name for f in AcmeAccount._meta.fields)


@admin.register(AcmeOrder)
class AcmeOrderAdmin(ReadOnlyAdmin):
    """ACME orders (read-only)."""

    list_display = ("token", "account", "status", "created_at", "expires")
    list_filter = ("status",)
    readonly_fields = tuple(f.name for f in AcmeOrder._meta.fields)


@admin.register(AcmeAuthorization)
class AcmeAuthorizationAdmin(ReadOnlyAdmin):
    """ACME authorizations (read-only)."""

    list_display = ("token", "identifier_type", "identifier_value", "wildcard", "status", "expires")
    list_filter = ("status", "identifier_type")
    readonly_fields = tuple(f.name for f in AcmeAuthorization._meta.fields)


@admin.register(AcmeChallenge)
class AcmeChallengeAdmin(ReadOnlyAdmin):
    """ACME challenges (read-only)."""

    list_display = ("url_token", "type", "status", "validated_at")
    list_filter = ("type", "status")
    readonly_fields = tuple(f.name for f in AcmeChallenge._meta.fields)
