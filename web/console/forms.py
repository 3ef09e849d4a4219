"""Console forms: they shape and bound input; policy and state checks are the use cases'."""

from __future__ import annotations

import base64
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from pki.exceptions import PolicyViolation
from pki.models import CertificateAuthority, KeyType, Profile, RequestState, RevocationReason, Role
from pki.profiles import EXTENDED_KEY_USAGES, KEY_FAMILIES, KEY_USAGES
from pki.serverkeys import MIN_PASSWORD_LENGTH, SERVER_KEY_TYPE_CHOICES
from pki.x509.names import parse_san, parse_subject
from web.console.common import DateTimeInput

MAX_CSR_CHARS = 65536
MAX_VALIDITY_DAYS = 36500
REASONS = [(r.value, r.label) for r in RevocationReason if r != RevocationReason.REMOVE_FROM_CRL]


def _lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


class LinesField(forms.CharField):
    """A list typed one item a line (or comma-separated)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 20000)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        """Show a list one item a line."""
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def clean(self, value: Any) -> list[str]:
        """The non-empty lines."""
        return _lines(str(super().clean(value) or ""))


def csr_text(raw: bytes) -> str:
    """A CSR as PEM text (a DER upload is wrapped), for use cases that travel as JSON."""
    if raw.lstrip().startswith(b"-----BEGIN"):
        return raw.decode("ascii", errors="replace")
    body = base64.encodebytes(raw).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


class CsrMixin(forms.Form):
    """A CSR pasted as PEM or uploaded as a PEM or DER file."""

    csr = forms.CharField(
        label="CSR (PEM)",
        required=False,
        max_length=MAX_CSR_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
    )
    csr_file = forms.FileField(label="or upload a CSR file", required=False)

    def clean(self) -> dict[str, Any]:
        """Exactly one of the two; an upload is read as bytes (PEM or DER, the use case decides)."""
        data = super().clean() or {}
        upload: UploadedFile[bytes] | None = data.get("csr_file")
        text = data.get("csr") or ""
        if upload is not None and text.strip():
            raise forms.ValidationError("Paste a CSR or upload one, not both.")
        if upload is not None:
            if upload.size is not None and upload.size > MAX_CSR_CHARS:
                self.add_error("csr_file", "The file is too large for a CSR.")
            else:
                data["csr_bytes"] = upload.read()
        elif text.strip():
            data["csr_bytes"] = text.encode()
        elif self.csr_required:
            self.add_error("csr", "Paste a CSR or upload one.")
        return data

    csr_required = True


class EnrollForm(CsrMixin):
    """A CSR for a CA under a profile (``pki.enrollment.enroll``)."""

    ca = forms.ModelChoiceField(
        queryset=CertificateAuthority.objects.none(), to_field_name="name", label="CA"
    )
    profile = forms.ModelChoiceField(queryset=Profile.objects.none(), to_field_name="name")
    validity_days = forms.IntegerField(
        min_value=1, max_value=MAX_VALIDITY_DAYS, required=False, help_text="empty: the profile's default"
    )

    def __init__(self, *args: Any, cas: Any, profiles: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ca"].queryset = cas  # type: ignore[attr-defined]
        self.fields["profile"].queryset = profiles  # type: ignore[attr-defined]


class ServerKeyForm(forms.Form):
    """KMI generates the key (``pki.serverkeys.request_server_key``), handed over once as PKCS#12."""

    ca = forms.ModelChoiceField(
        queryset=CertificateAuthority.objects.none(), to_field_name="name", label="CA"
    )
    profile = forms.ModelChoiceField(queryset=Profile.objects.none(), to_field_name="name")
    subject = forms.CharField(
        max_length=1024, required=False, help_text="RFC 4514, e.g. CN=device-17,O=Example"
    )
    sans = LinesField(label="Subject alternative names", help_text="one a line: dns:…, ip:…, email:…, uri:…")
    key_type = forms.ChoiceField(choices=SERVER_KEY_TYPE_CHOICES, initial=KeyType.EC_P256)
    validity_days = forms.IntegerField(min_value=1, max_value=MAX_VALIDITY_DAYS, required=False)

    def __init__(self, *args: Any, cas: Any, profiles: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ca"].queryset = cas  # type: ignore[attr-defined]
        self.fields["profile"].queryset = profiles  # type: ignore[attr-defined]

    def clean_subject(self) -> str:
        """An RFC 4514 name, or empty (the SANs name the certificate)."""
        value = str(self.cleaned_data["subject"])
        if value:
            try:
                parse_subject(value)
            except PolicyViolation as exc:
                raise forms.ValidationError(str(exc)) from None
        return value

    def clean_sans(self) -> list[str]:
        """Each line ``dns:…``, ``ip:…``, ``email:…`` or ``uri:…``."""
        sans: list[str] = self.cleaned_data["sans"]
        for text in sans:
            try:
                parse_san(text)
            except PolicyViolation as exc:
                raise forms.ValidationError(str(exc)) from None
        return sans


class Pkcs12Form(forms.Form):
    """The password protecting the one PKCS#12 download."""

    password = forms.CharField(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=1024,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=f"at least {MIN_PASSWORD_LENGTH} characters; the file can be opened only with it",
    )
    confirm = forms.CharField(
        max_length=1024,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        label="Password again",
    )

    def clean(self) -> dict[str, Any]:
        """Both passwords must match."""
        data = super().clean() or {}
        if data.get("password") and data.get("password") != data.get("confirm"):
            self.add_error("confirm", "The two passwords differ.")
        return data


class RequestFilterForm(forms.Form):
    """The queue's filters."""

    state = forms.ChoiceField(choices=[("", "any state"), *RequestState.choices], required=False)
    ca = forms.CharField(max_length=64, required=False, label="CA")
    profile = forms.CharField(max_length=64, required=False)


class RejectForm(forms.Form):
    """Why a request is rejected (``pki.issuance.reject_request``)."""

    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class CertificateFilterForm(forms.Form):
    """Search and filters of the certificate list (``CertificateQuerySet.matching``)."""

    q = forms.CharField(
        max_length=200, required=False, label="Search", help_text="part of a name, SAN or serial"
    )
    state = forms.ChoiceField(
        choices=[("", "any"), ("valid", "valid"), ("expired", "expired"), ("revoked", "revoked or on hold")],
        required=False,
    )
    ca = forms.CharField(max_length=64, required=False, label="CA")
    profile = forms.CharField(max_length=64, required=False)
    expiring_before = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Expiring before"
    )


class RevokeForm(forms.Form):
    """``pki.revocation.revoke_certificate``: a reason and, optionally, since when the key was bad."""

    reason = forms.ChoiceField(choices=REASONS, initial=RevocationReason.UNSPECIFIED)
    invalidity_date = forms.DateTimeField(required=False, widget=DateTimeInput(), help_text="UTC; optional")


class RenewForm(CsrMixin):
    """``pki.issuance.renew_certificate``: the same key, or the new key of an uploaded CSR."""

    csr_required = False
    validity_days = forms.IntegerField(min_value=1, max_value=MAX_VALIDITY_DAYS, required=False)


class IntermediateForm(forms.Form):
    """``pki.authorities.create_intermediate_ca`` (or ``create_root_ca`` without a parent)."""

    name = forms.RegexField(
        regex=r"^[a-z0-9][a-z0-9-]{0,62}$",
        max_length=63,
        help_text="lower-case letters, digits and -; it appears in URLs",
    )
    parent = forms.ModelChoiceField(
        queryset=CertificateAuthority.objects.order_by("name"),
        to_field_name="name",
        required=False,
        empty_label="(none: a new self-signed root)",
    )
    subject = forms.CharField(max_length=1024, help_text="RFC 4514, e.g. CN=Example Issuing CA,O=Example")
    key_type = forms.ChoiceField(choices=KeyType.choices, initial=KeyType.EC_P256)
    validity_days = forms.IntegerField(min_value=1, max_value=MAX_VALIDITY_DAYS, initial=1825)
    path_length = forms.IntegerField(min_value=0, max_value=16, required=False)
    permitted = LinesField(label="Permitted names", help_text="name constraints, e.g. dns:example.test")
    excluded = LinesField(label="Excluded names")


class CAStateForm(forms.Form):
    """Disable or enable a CA, with a reason for the audit trail."""

    enabled = forms.BooleanField(required=False, widget=forms.HiddenInput)
    reason = forms.CharField(max_length=500, required=False)


_KEY_TYPE_CHOICES = [(k, k) for k in sorted(KEY_FAMILIES)]


class ProfileForm(forms.Form):
    """The editable fields of a profile (``pki.profile_changes``)."""

    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    validity_days = forms.IntegerField(min_value=1, max_value=MAX_VALIDITY_DAYS, label="Validity cap (days)")
    default_validity_days = forms.IntegerField(min_value=1, max_value=MAX_VALIDITY_DAYS)
    key_types = forms.MultipleChoiceField(choices=_KEY_TYPE_CHOICES, widget=forms.CheckboxSelectMultiple)
    min_rsa_bits = forms.IntegerField(min_value=2048, max_value=16384, initial=2048, label="Minimum RSA bits")
    key_usage = forms.MultipleChoiceField(
        choices=[(k, k) for k in KEY_USAGES], required=False, widget=forms.CheckboxSelectMultiple
    )
    extended_key_usage = forms.MultipleChoiceField(
        choices=[(k, k) for k in sorted(EXTENDED_KEY_USAGES)],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    allowed_names = LinesField(
        help_text="patterns, one a line: dns:*.example.test, ip:10.0.0.0/8, email:*@example.test"
    )
    require_san = forms.BooleanField(required=False, label="Require a SAN")
    requires_approval = forms.BooleanField(required=False, help_text="an operator approves every request")
    ocsp_no_check = forms.BooleanField(required=False, label="OCSP no-check")
    escrow = forms.BooleanField(required=False, help_text="keep server-generated keys after their download")


class NewProfileForm(ProfileForm):
    """A new profile: a name and the editable fields."""

    name = forms.RegexField(regex=r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64)
    field_order = ["name"]


class ConfirmForm(forms.Form):
    """A typed confirmation: the user types ``expected`` to go ahead."""

    typed = forms.CharField(max_length=200, label="Type to confirm")
    reason = forms.CharField(max_length=500, required=False)

    def __init__(self, *args: Any, expected: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_typed(self) -> str:
        """It must be exactly what was asked."""
        typed = str(self.cleaned_data["typed"]).strip()
        if typed != self.expected:
            raise forms.ValidationError(f"Type {self.expected} exactly to confirm.")
        return typed


class AuditFilterForm(forms.Form):
    """Filters of the audit trail (as the API's)."""

    actor = forms.CharField(max_length=150, required=False)
    action = forms.CharField(max_length=64, required=False, help_text="e.g. certificate.revoked")
    object_type = forms.CharField(max_length=64, required=False, label="Object type")
    object_id = forms.CharField(max_length=128, required=False, label="Object id")
    since = forms.DateTimeField(required=False, widget=DateTimeInput(), help_text="UTC")
    until = forms.DateTimeField(required=False, widget=DateTimeInput(), help_text="UTC")


class UserForm(forms.Form):
    """A new console account (``pki.users.create_user``)."""

    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="the user's first password",
    )


class PasswordSetForm(forms.Form):
    """A new password for an account (``pki.users.set_password``)."""

    password = forms.CharField(
        strip=False, max_length=1024, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )


class GrantForm(forms.Form):
    """``pki.access.grant_role``: which names a role needs is the use case's to say."""

    role = forms.ChoiceField(choices=Role.choices)
    ca = forms.ModelChoiceField(
        queryset=CertificateAuthority.objects.order_by("name"),
        to_field_name="name",
        required=False,
        label="CA",
    )
    profile = forms.ModelChoiceField(
        queryset=Profile.objects.order_by("name"), to_field_name="name", required=False
    )


class TokenForm(forms.Form):
    """``pki.tokens.create_token`` for oneself."""

    name = forms.CharField(max_length=100, required=False)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="empty: never"
    )


class EndpointPolicyForm(forms.Form):
    """An ACME endpoint's policy (``pki.acme.endpoints.update_endpoint``)."""

    allowed_identifiers = LinesField(
        help_text="DNS globs (*.example.test, **.corp.example.test) or IP networks, one a line"
    )
    eab_required = forms.BooleanField(required=False, label="External account binding required")
    validity_days = forms.IntegerField(
        min_value=1, max_value=MAX_VALIDITY_DAYS, required=False, help_text="empty: the profile's default"
    )
    key_types = forms.MultipleChoiceField(
        choices=_KEY_TYPE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    terms_of_service = forms.URLField(required=False, max_length=200, assume_scheme="https")
    website = forms.URLField(required=False, max_length=200, assume_scheme="https")
    caa_identities = LinesField(label="CAA identities")


class EndpointForm(EndpointPolicyForm):
    """A new ACME endpoint (``pki.acme.endpoints.create_endpoint``)."""

    name = forms.RegexField(
        regex=r"^[a-z0-9][a-z0-9-]{0,63}$", max_length=64, help_text="the directory is /acme/<name>/directory"
    )
    ca = forms.ModelChoiceField(
        queryset=CertificateAuthority.objects.order_by("name"), to_field_name="name", label="CA"
    )
    profile = forms.ModelChoiceField(
        queryset=Profile.objects.filter(is_ca=False, requires_approval=False).order_by("name"),
        to_field_name="name",
    )
    field_order = ["name", "ca", "profile"]


class EabKeyForm(forms.Form):
    """``pki.acme.endpoints.create_eab_key``: optionally for a named user."""

    user = forms.CharField(max_length=150, required=False, help_text="user name the key is for (optional)")


class DeviceLabelForm(forms.Form):
    """A new EST or SCEP label (``create_est_label`` / ``create_scep_label``)."""

    protocol = forms.ChoiceField(choices=[("est", "EST"), ("scep", "SCEP")])
    name = forms.RegexField(
        regex=r"^[a-z0-9][a-z0-9-]{0,63}$",
        max_length=64,
        help_text="/.well-known/est/<name>/ or /scep/<name>",
    )
    ca = forms.ModelChoiceField(
        queryset=CertificateAuthority.objects.order_by("name"), to_field_name="name", label="CA"
    )
    profile = forms.ModelChoiceField(
        queryset=Profile.objects.filter(is_ca=False).order_by("name"), to_field_name="name"
    )
    client_cas = forms.ModelMultipleChoiceField(
        queryset=CertificateAuthority.objects.order_by("name"),
        to_field_name="name",
        required=False,
        label="Client CAs",
        help_text="EST: CAs whose certificates authenticate devices by TLS client certificate",
    )
    challenge = forms.CharField(
        max_length=128,
        required=False,
        strip=False,
        widget=forms.PasswordInput,
        help_text="SCEP: an optional static challenge password (12-128 characters)",
    )


class DeviceCodesForm(forms.Form):
    """One-time EST codes (``create_enrollment_codes``) or a SCEP challenge (``create_scep_challenge``)."""

    count = forms.IntegerField(min_value=1, max_value=1000, initial=1, help_text="EST codes: one per device")
    expires_days = forms.IntegerField(min_value=1, max_value=365, initial=7, label="Expires after (days)")
