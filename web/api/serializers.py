"""Serializers shape and validate; they never sign (the viewsets call pki use cases)."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from rest_framework import serializers
from rest_framework.reverse import reverse
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from pki.clock import utcnow
from pki.enrollment import load_targets
from pki.exceptions import PolicyViolation
from pki.issuance import CertificateOptions
from pki.key_controls import KeyAction
from pki.locations import ca_certificate_url, crl_url, ocsp_url
from pki.models import (
    ApiToken,
    AuditEvent,
    CACreation,
    CAGeneration,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Key,
    KeyDelivery,
    KeyDestruction,
    KeyRecovery,
    KeyType,
    Profile,
    RevocationReason,
    Role,
    RoleGrant,
)
from pki.profile_changes import EDITABLE_FIELDS
from pki.serverkeys import MIN_PASSWORD_LENGTH, SERVER_KEY_TYPE_CHOICES
from pki.x509.names import SAN, parse_san, parse_subject

MAX_CSR_CHARS = 65536
MAX_VALIDITY_DAYS = 36500  # a hundred years: any validity_days field of the API (profiles cap it)
SLUG_RE = re.compile(
    r"[-a-zA-Z0-9_]{1,64}"
)  # the domain applies its own, smaller byte limit (KMI_MAX_CSR_BYTES)


_SURROGATES = re.compile("[\ud800-\udfff]")


def validity_days_field(**kwargs: Any) -> serializers.IntegerField:
    """A number of days of validity, 1 to MAX_VALIDITY_DAYS (the profile and the CA cap it)."""
    return serializers.IntegerField(min_value=1, max_value=MAX_VALIDITY_DAYS, **kwargs)


class FastSurrogateCheck(ProhibitSurrogateCharactersValidator):
    """DRF's check that text holds no surrogate code points, without a Python loop per character.

    A CSR in PEM is a few kilobytes of ASCII: DRF's generator over every character cost more
    than parsing the CSR.
    """

    def __call__(self, value: Any) -> None:
        """Raise like DRF's validator for the first surrogate character."""
        text = str(value)
        if text.isascii():
            return
        found = _SURROGATES.search(text)
        if found is not None:
            message = self.message.format(code_point=ord(found.group()))
            raise serializers.ValidationError(message, code=self.code)


class TextField(serializers.CharField):
    """A CharField whose surrogate check is ``FastSurrogateCheck``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            FastSurrogateCheck() if isinstance(v, ProhibitSurrogateCharactersValidator) else v
            for v in self.validators
        ]


class NameField(serializers.SlugRelatedField):  # type: ignore[type-arg]
    """A CA or profile by name; malformed names are refused before any query."""

    def to_internal_value(self, data: Any) -> Any:
        """Look the name up when it looks like a slug."""
        if not isinstance(data, str) or not SLUG_RE.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class UsernameField(serializers.SlugRelatedField):  # type: ignore[type-arg]
    """A user by name; a name PostgreSQL cannot hold (a NUL character) is refused before any query."""

    def to_internal_value(self, data: Any) -> Any:
        """Look the name up unless it holds a NUL."""
        if isinstance(data, str) and "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


def _url(name: str, pk: object, context: Mapping[str, Any]) -> str:
    return reverse(name, kwargs={"pk": pk}, request=context.get("request"))


class CertificateAuthoritySerializer(serializers.ModelSerializer[CertificateAuthority]):
    """A CA with its certificate's main facts."""

    # A field named "parent" shadows Field.parent (the enclosing serializer) in the stubs; DRF's
    # metaclass moves declared fields off the class, so the two never meet at run time.
    parent: Any = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    subject = serializers.CharField(source="certificate.subject", read_only=True, allow_null=True)
    serial = serializers.CharField(source="certificate.serial", read_only=True, allow_null=True)
    not_before = serializers.DateTimeField(source="certificate.not_before", read_only=True, allow_null=True)
    not_after = serializers.DateTimeField(source="certificate.not_after", read_only=True, allow_null=True)
    key_type = serializers.CharField(source="key.key_type", read_only=True)
    certificate_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = CertificateAuthority
        fields = (
            "name",
            "parent",
            "state",
            "subject",
            "serial",
            "not_before",
            "not_after",
            "key_type",
            "path_length",
            "name_constraints",
            "certificate_id",
            "generation",
            "created_at",
        )
        read_only_fields = fields


class CAGenerationSerializer(serializers.ModelSerializer[CAGeneration]):
    """One generation (key) of a CA: its certificate, its state and the URLs it answers at."""

    key_type = serializers.CharField(source="key.key_type", read_only=True)
    key_backend = serializers.CharField(source="key.backend", read_only=True)
    key_state = serializers.CharField(source="key.state", read_only=True)
    serial = serializers.CharField(source="certificate.serial", read_only=True, allow_null=True)
    not_before = serializers.DateTimeField(source="certificate.not_before", read_only=True, allow_null=True)
    not_after = serializers.DateTimeField(source="certificate.not_after", read_only=True, allow_null=True)
    certificate = serializers.SerializerMethodField()
    link_from_previous = serializers.SerializerMethodField(
        help_text="this key certified by the previous generation's key (roots)"
    )
    link_to_previous = serializers.SerializerMethodField(
        help_text="the previous generation's key certified by this key (roots)"
    )
    crl_url = serializers.SerializerMethodField()
    ocsp_url = serializers.SerializerMethodField()
    ca_certificate_url = serializers.SerializerMethodField()

    class Meta:
        model = CAGeneration
        fields = (
            "number",
            "state",
            "key_id",
            "key_type",
            "key_backend",
            "key_state",
            "serial",
            "not_before",
            "not_after",
            "certificate",
            "activates_at",
            "activated_at",
            "retired_at",
            "link_from_previous",
            "link_to_previous",
            "crl_url",
            "ocsp_url",
            "ca_certificate_url",
        )
        read_only_fields = fields

    def _cert_url(self, cert_id: int | None) -> str | None:
        return None if cert_id is None else _url("api:certificate-detail", cert_id, self.context)

    def get_certificate(self, obj: CAGeneration) -> str | None:
        """The API URL of this generation's certificate."""
        return self._cert_url(obj.certificate_id)

    def get_link_from_previous(self, obj: CAGeneration) -> str | None:
        """The API URL of the link certificate from the previous generation."""
        return self._cert_url(obj.link_from_previous_id)

    def get_link_to_previous(self, obj: CAGeneration) -> str | None:
        """The API URL of the link certificate to the previous generation."""
        return self._cert_url(obj.link_to_previous_id)

    def get_crl_url(self, obj: CAGeneration) -> str:
        """Where this generation's full CRL is published."""
        return crl_url(obj.repository_name)

    def get_ocsp_url(self, obj: CAGeneration) -> str:
        """This generation's OCSP responder."""
        return ocsp_url(obj.repository_name)

    def get_ca_certificate_url(self, obj: CAGeneration) -> str:
        """This generation's certificate in the repository (AIA caIssuers)."""
        return ca_certificate_url(obj.repository_name)


class RolloverSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``rollover_ca``: every field optional (the current key's type and backend)."""

    key_type = serializers.ChoiceField(choices=KeyType.choices, required=False)
    backend = serializers.RegexField(r"^[a-zA-Z0-9_-]{1,32}$", required=False)
    at = serializers.DateTimeField(required=False, help_text="when issuance moves to the new key")
    validity_days = validity_days_field(required=False)


class RenewCASerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``renew_ca``."""

    validity_days = validity_days_field(required=False)


class NameConstraintsSerializer(serializers.Serializer[dict[str, Any]]):
    """Permitted and excluded subtrees, e.g. ``dns:example.test`` or ``ip:10.0.0.0/8``."""

    permitted = serializers.ListField(
        child=serializers.CharField(max_length=255), default=list, max_length=100
    )
    excluded = serializers.ListField(
        child=serializers.CharField(max_length=255), default=list, max_length=100
    )


class IntermediateCASerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``create_intermediate_ca``."""

    name = serializers.RegexField(r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)
    parent: Any = NameField(slug_field="name", queryset=CertificateAuthority.objects.all())  # see above
    subject = serializers.CharField(max_length=1024)
    key_type = serializers.ChoiceField(choices=KeyType.choices, default=KeyType.EC_P256)
    validity_days = validity_days_field(default=1825)
    path_length = serializers.IntegerField(min_value=0, max_value=16, required=False, allow_null=True)
    name_constraints = NameConstraintsSerializer(required=False)

    def validate_subject(self, value: str) -> str:
        """The subject must be an RFC 4514 name."""
        try:
            parse_subject(value)
        except PolicyViolation as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class CACreationSerializer(serializers.ModelSerializer[CACreation]):
    """A CA an administrator asked for: its parameters, who approved, and the CA once it is made."""

    url = serializers.SerializerMethodField()
    parent: Any = serializers.SlugRelatedField(slug_field="name", read_only=True)
    ca: Any = serializers.SlugRelatedField(slug_field="name", read_only=True)
    approved_by = serializers.SerializerMethodField()

    class Meta:
        model = CACreation
        fields = (
            "id",
            "url",
            "name",
            "parent",
            "subject",
            "key_type",
            "validity_days",
            "path_length",
            "name_constraints",
            "state",
            "approvals_required",
            "approved_by",
            "requested_by",
            "decided_by",
            "decided_at",
            "reason",
            "ca",
            "created_at",
        )
        read_only_fields = fields

    def get_url(self, obj: CACreation) -> str:
        """This creation's URL."""
        return _url("api:ca-creation-detail", obj.pk, self.context)

    def get_approved_by(self, obj: CACreation) -> list[str]:
        """The audit actors who approved, in order."""
        return [str(a.get("by", "")) for a in obj.approvals]


class ProfileSerializer(serializers.ModelSerializer[Profile]):
    """A profile; administrators may change the fields ``update_profile`` accepts."""

    key_types = serializers.ListField(child=serializers.CharField(max_length=16), max_length=16)
    key_usage = serializers.ListField(child=serializers.CharField(max_length=32), max_length=16)
    extended_key_usage = serializers.ListField(child=serializers.CharField(max_length=64), max_length=16)
    allowed_names = serializers.ListField(child=serializers.CharField(max_length=255), max_length=256)
    validity_days = validity_days_field()
    default_validity_days = validity_days_field()
    min_rsa_bits = serializers.IntegerField(min_value=2048, max_value=16384)

    class Meta:
        model = Profile
        fields = (
            "name",
            "description",
            "validity_days",
            "default_validity_days",
            "key_types",
            "min_rsa_bits",
            "key_usage",
            "extended_key_usage",
            "allowed_names",
            "require_san",
            "requires_approval",
            "approvals_required",
            "is_ca",
            "path_length",
            "ocsp_no_check",
            "escrow",
            "auto_renew",
            "renew_before_days",
            "updated_at",
        )
        read_only_fields = tuple(f for f in fields if f not in EDITABLE_FIELDS)


class CertificateSerializer(serializers.ModelSerializer[Certificate]):
    """A certificate's facts (no DER: download it from ``pem``/``der``/``chain``/``pkcs7``)."""

    ca = serializers.CharField(source="ca.name", read_only=True, allow_null=True)
    profile = serializers.CharField(source="profile.name", read_only=True, allow_null=True)
    sans = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    revocation_reason = serializers.CharField(read_only=True, help_text="CRLReason, empty when not revoked")
    owner_email = serializers.CharField(
        read_only=True, help_text="who hears about it (empty: see the manual)"
    )
    owner_webhook_url = serializers.CharField(read_only=True, help_text="its owner's webhook (may be empty)")

    class Meta:
        model = Certificate
        fields: tuple[str, ...] = (
            "id",
            "url",
            "serial",
            "ca",
            "profile",
            "subject",
            "sans",
            "status",
            "not_before",
            "not_after",
            "fingerprint_sha256",
            "key_fingerprint",
            "key_id",
            "is_ca",
            "request_id",
            "renewed_from_id",
            "revoked_at",
            "revocation_reason",
            "invalidity_date",
            "auto_renew",
            "renew_before_days",
            "owner_email",
            "owner_webhook_url",
            "created_at",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_sans(self, obj: Certificate) -> list[str]:
        """SANs as ``kind:value`` strings."""
        return obj.san_text.splitlines()

    def get_status(self, obj: Certificate) -> str:
        """valid, expired, revoked or not_yet_valid now."""
        now = self.context.get("now") or utcnow()
        return obj.status(now)

    def get_url(self, obj: Certificate) -> str:
        """This certificate's API URL."""
        return _url("api:certificate-detail", obj.pk, self.context)


class RevokeSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``revoke_certificate``."""

    reason = serializers.ChoiceField(
        choices=[r for r in RevocationReason.values if r != RevocationReason.REMOVE_FROM_CRL],
        default=RevocationReason.UNSPECIFIED,
    )
    invalidity_date = serializers.DateTimeField(required=False, allow_null=True)


class SuccessorSerializer(CertificateSerializer):
    """A certificate's successor: its facts and its chain as PEM."""

    pem = serializers.CharField(read_only=True, help_text="the certificate and its chain, PEM")

    class Meta(CertificateSerializer.Meta):
        fields = (*CertificateSerializer.Meta.fields, "pem")
        read_only_fields = fields


class RenewSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``renew_certificate``: optionally a CSR for a new key."""

    csr = TextField(required=False, max_length=MAX_CSR_CHARS, trim_whitespace=False)
    validity_days = validity_days_field(required=False, allow_null=True)


class CertificateRequestSerializer(serializers.ModelSerializer[CertificateRequest]):
    """A certificate request and its review."""

    ca = serializers.CharField(source="ca.name", read_only=True)
    profile = serializers.CharField(source="profile.name", read_only=True)
    sans = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    certificate = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    approvals_required = serializers.SerializerMethodField()
    renews = serializers.SerializerMethodField()

    class Meta:
        model = CertificateRequest
        fields = (
            "id",
            "url",
            "ca",
            "profile",
            "subject",
            "sans",
            "key_fingerprint",
            "validity_days",
            "state",
            "requested_by",
            "reviewed_by",
            "reason",
            "created_at",
            "reviewed_at",
            "certificate",
            "approvals",
            "approvals_required",
            "renews",
        )
        read_only_fields = fields

    def get_sans(self, obj: CertificateRequest) -> list[str]:
        """SANs as ``kind:value`` strings."""
        return obj.san_text.splitlines()

    def get_url(self, obj: CertificateRequest) -> str:
        """This request's API URL."""
        return _url("api:request-detail", obj.pk, self.context)

    def get_approvals(self, obj: CertificateRequest) -> list[dict[str, str]]:
        """Who approved it so far, and when (a profile may need several distinct reviewers)."""
        return [
            {"approved_by": a.approved_by, "approved_at": a.created_at.isoformat()}
            for a in obj.approvals.all()
        ]

    def get_approvals_required(self, obj: CertificateRequest) -> int:
        """Approvals by distinct reviewers this request needs (1 when its profile needs none)."""
        return obj.profile.approvals_required if obj.profile.requires_approval else 1

    def get_renews(self, obj: CertificateRequest) -> str | None:
        """The API URL of the certificate this request renews, for a renewal awaiting approval."""
        return _url("api:certificate-detail", obj.renews_id, self.context) if obj.renews_id else None

    def get_certificate(self, obj: CertificateRequest) -> str | None:
        """The issued certificate's API URL, once issued."""
        cert_id = getattr(obj, "certificate_id_value", None)  # annotated by the viewset's queryset
        return _url("api:certificate-detail", cert_id, self.context) if cert_id is not None else None


class SubmitSerializer(serializers.Serializer[dict[str, Any]]):
    """A CSR for a CA under a profile (the input of enroll and of request submission)."""

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        """Shallow copies of the declared fields: DRF deep-copies them for every instance, which
        re-runs each field's constructor and builds its validators again (a tenth of an
        enrollment's CPU). These fields keep no state but what ``bind`` sets on the copy."""
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}

    csr = TextField(max_length=MAX_CSR_CHARS, trim_whitespace=False, help_text="PEM (or base64 DER)")
    # Names here; both objects come from pki.enrollment.load_targets (one query, cached objects).
    ca = serializers.CharField(max_length=64, help_text="CA name")
    profile = serializers.CharField(max_length=64, help_text="profile name")
    validity_days = validity_days_field(required=False, allow_null=True)
    auto_renew = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="renew by itself (null: the profile's default)",
    )
    renew_before_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=3650, help_text="days before notAfter"
    )
    owner_email = serializers.EmailField(
        required=False, allow_blank=True, default="", help_text="who hears about it (default: you)"
    )
    owner_webhook_url = serializers.URLField(
        required=False,
        allow_blank=True,
        default="",
        max_length=500,
        help_text="signed webhook for its notices and, when it renews itself, its successor",
    )

    def options(self) -> CertificateOptions:
        """The certificate options the body asks for."""
        v = self.validated_data
        return CertificateOptions(
            auto_renew=v.get("auto_renew"),
            renew_before_days=v.get("renew_before_days"),
            owner_email=v.get("owner_email", ""),
            owner_webhook_url=v.get("owner_webhook_url", ""),
        )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Validate the fields, then resolve the CA and profile names together."""
        errors: dict[str, Any] = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = dict(exc.detail) if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            value = {}
        names = {}
        for field in ("ca", "profile"):
            raw = data.get(field) if isinstance(data, Mapping) else None
            if field in errors or raw is None:
                continue
            if not isinstance(raw, str) or not SLUG_RE.fullmatch(raw):
                errors[field] = [serializers.ErrorDetail("Invalid value.", code="invalid")]
            else:
                names[field] = raw
        if "ca" in names or "profile" in names:
            ca, profile = load_targets(ca_name=names.get("ca", ""), profile_name=names.get("profile", ""))
            for field, obj in (("ca", ca), ("profile", profile)):
                if field not in names:
                    continue
                if obj is None:
                    message = f"Object with name={names[field]} does not exist."
                    errors[field] = [serializers.ErrorDetail(message, code="does_not_exist")]
                else:
                    value[field] = obj
        if errors:
            raise serializers.ValidationError(errors)
        return dict(value)


class RejectSerializer(serializers.Serializer[dict[str, Any]]):
    """Why a request is rejected."""

    reason = serializers.CharField(max_length=2000)


class KeySerializer(serializers.ModelSerializer[Key]):
    """Key metadata; the handle and private material never leave KMI."""

    class Meta:
        model = Key
        fields = (
            "id",
            "key_type",
            "purpose",
            "backend",
            "spki_sha256",
            "state",
            "escrow",
            "created_at",
            "activated_at",
            "suspended_at",
            "deactivated_at",
            "compromised_at",
            "destroyed_at",
            "destroyed_by",
        )
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    """One audit event with its hash link."""

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "stream",
            "seq",
            "timestamp",
            "actor",
            "action",
            "object_type",
            "object_id",
            "details",
            "prev_hash",
            "hash",
        )
        read_only_fields = fields


class AuditBreakSerializer(serializers.Serializer[Any]):
    """A broken link."""

    stream = serializers.CharField()
    seq = serializers.IntegerField()
    event_id = serializers.IntegerField(allow_null=True)
    problem = serializers.CharField()


class AuditReportSerializer(serializers.Serializer[Any]):
    """The result of verifying every chain."""

    ok = serializers.BooleanField()
    streams = serializers.IntegerField()
    events = serializers.IntegerField()
    breaks = AuditBreakSerializer(many=True)


class ServerKeyRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Ask KMI to generate a key and certificate for a client that cannot make a CSR."""

    ca = NameField(
        slug_field="name", queryset=CertificateAuthority.objects.select_related("certificate", "key")
    )
    profile = NameField(slug_field="name", queryset=Profile.objects.all())
    subject = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    sans = serializers.ListField(
        child=serializers.CharField(max_length=512), required=False, default=list, max_length=100
    )
    key_type = serializers.ChoiceField(choices=SERVER_KEY_TYPE_CHOICES, default=KeyType.EC_P256)
    validity_days = validity_days_field(required=False, allow_null=True)

    def validate_subject(self, value: str) -> str:
        """An RFC 4514 name, or empty (then the SANs name the certificate)."""
        if value:
            try:
                parse_subject(value)
            except PolicyViolation as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_sans(self, value: list[str]) -> list[SAN]:
        """``dns:…``, ``ip:…``, ``email:…`` or ``uri:…``."""
        out = []
        for text in value:
            try:
                out.append(parse_san(text))
            except PolicyViolation as exc:
                raise serializers.ValidationError(str(exc)) from None
        return out


class KeyDeliverySerializer(serializers.ModelSerializer[KeyDelivery]):
    """A server-generated key waiting for (or past) its single download."""

    url = serializers.SerializerMethodField()
    request = serializers.SerializerMethodField()
    pkcs12_url = serializers.SerializerMethodField()

    class Meta:
        model = KeyDelivery
        fields = ("id", "url", "key_id", "request", "pkcs12_url", "created_at", "delivered_at")
        read_only_fields = fields

    def get_url(self, obj: KeyDelivery) -> str:
        """This delivery's API URL."""
        return _url("api:server-key-detail", obj.pk, self.context)

    def get_request(self, obj: KeyDelivery) -> str:
        """The certificate request's API URL."""
        return _url("api:request-detail", obj.request_id, self.context)

    def get_pkcs12_url(self, obj: KeyDelivery) -> str:
        """Where the PKCS#12 is downloaded (POST the password), once."""
        return _url("api:server-key-pkcs12", obj.pk, self.context)


class KeyStateSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of a key control (NIST SP 800-57 states)."""

    action = serializers.ChoiceField(choices=[a.value for a in KeyAction])
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    revoke_issued = serializers.BooleanField(
        required=False, default=False, help_text="compromised CA key: also revoke what it signed"
    )
    invalidity_date = serializers.DateTimeField(required=False, allow_null=True, default=None)


class KeyDestructionSerializer(serializers.ModelSerializer[KeyDestruction]):
    """A CA key's destruction waiting for (or done by) a second administrator."""

    class Meta:
        model = KeyDestruction
        fields = ("id", "key_id", "state", "reason", "requested_by", "approved_by", "created_at", "done_at")
        read_only_fields = fields


class KeyRecoverySerializer(serializers.ModelSerializer[KeyRecovery]):
    """A recovery of an escrowed key: who asked, who approved, whether it was downloaded."""

    url = serializers.SerializerMethodField()

    class Meta:
        model = KeyRecovery
        fields = (
            "id",
            "url",
            "key_id",
            "state",
            "reason",
            "requested_by",
            "approved_by",
            "approved_at",
            "delivered_at",
            "created_at",
        )
        read_only_fields = fields

    def get_url(self, obj: KeyRecovery) -> str:
        """This recovery's URL."""
        return _url("api:key-recovery-detail", obj.pk, self.context)


class KeyRecoveryRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Why an escrowed key is to be recovered."""

    reason = serializers.CharField(max_length=1000)


class Pkcs12PasswordSerializer(serializers.Serializer[dict[str, Any]]):
    """The password that protects the PKCS#12."""

    password = serializers.CharField(min_length=MIN_PASSWORD_LENGTH, max_length=1024, trim_whitespace=False)


class ServerKeyPkcs12Serializer(Pkcs12PasswordSerializer):
    """The password of the PKCS#12 and the delivery's one-time download secret."""

    download_secret = serializers.CharField(
        max_length=128, help_text="the `download_secret` of the creation response (given once)"
    )


class CreatedKeyDeliverySerializer(KeyDeliverySerializer):
    """A new delivery, with its one-time download secret (shown in this response only)."""

    download_secret = serializers.SerializerMethodField()

    class Meta:
        model = KeyDelivery
        fields = (
            "id",
            "url",
            "key_id",
            "request",
            "pkcs12_url",
            "created_at",
            "delivered_at",
            "download_secret",
        )
        read_only_fields = fields

    def get_download_secret(self, obj: KeyDelivery) -> str:
        """The secret the PKCS#12 download needs; KMI keeps only its SHA-256."""
        return str(self.context["download_secret"])


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    """A token's metadata (the secret is shown only in the creation response)."""

    user = serializers.CharField(source="user.username", read_only=True)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True, write_only=True
    )

    class Meta:
        model = ApiToken
        fields: tuple[str, ...] = (
            "id",
            "user",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "expires_in_days",
        )
        read_only_fields = ("id", "user", "prefix", "created_at", "expires_at", "revoked_at")

    def expiry(self) -> dt.datetime | None:
        """The requested expiry as a time."""
        days = self.validated_data.get("expires_in_days")
        return utcnow() + dt.timedelta(days=days) if days else None


class NewApiTokenSerializer(ApiTokenSerializer):
    """The creation response: the token text, shown once."""

    token = serializers.CharField(read_only=True, help_text="shown once; store it now")

    class Meta(ApiTokenSerializer.Meta):
        fields = (*ApiTokenSerializer.Meta.fields, "token")


class RoleGrantSerializer(serializers.ModelSerializer[RoleGrant]):
    """One role given to one user (``ca`` for operators and requesters, ``profile`` for requesters).

    On creation ``user``, ``ca`` and ``profile`` are names; ``pki.access.grant_role`` decides which
    roles need which (a requester names both, a CA operator a CA, the global roles neither).
    """

    user = UsernameField(slug_field="username", queryset=User.objects.all())
    role = serializers.ChoiceField(choices=Role.choices)
    ca = NameField(
        slug_field="name", queryset=CertificateAuthority.objects.all(), required=False, allow_null=True
    )
    profile = NameField(slug_field="name", queryset=Profile.objects.all(), required=False, allow_null=True)

    class Meta:
        model = RoleGrant
        fields = ("id", "user", "role", "ca", "profile", "granted_by", "created_at")
        read_only_fields = ("id", "granted_by", "created_at")
        validators: list[Any] = []  # uniqueness is the use case's: granting twice returns the grant
