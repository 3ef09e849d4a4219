"""ACME (RFC 8555): endpoints with their policy, accounts, EAB keys, orders, authorizations,
challenges and the database nonce store."""

from __future__ import annotations

import secrets

from django.contrib.auth.models import User
from django.db import models


def new_token() -> str:
    """A random URL-safe identifier for an ACME resource (128 bits)."""
    return secrets.token_urlsafe(16)


class AcmeEndpoint(models.Model):
    """A directory: binds a name to a CA and a profile, with the endpoint's own policy."""

    name = models.SlugField(max_length=64, unique=True)
    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey("pki.Profile", on_delete=models.PROTECT, related_name="+")
    allowed_identifiers = models.JSONField(
        default=list,
        blank=True,
        help_text='patterns like "dns:*.example.test", "dns:**", "ip:10.0.0.0/8" (empty: none allowed)',
    )
    eab_required = models.BooleanField(default=False, help_text="RFC 8555 §7.3.4 externalAccountRequired")
    validity_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="validity of issued certificates (default: the profile's)"
    )
    key_types = models.JSONField(
        default=list, blank=True, help_text='allowed certificate key types, e.g. ["ec", "rsa"] (empty: any)'
    )
    terms_of_service = models.URLField(blank=True)
    website = models.URLField(blank=True)
    caa_identities = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        verbose_name = "ACME endpoint"

    def __str__(self) -> str:
        return self.name


EAB_SEAL_PURPOSE = "acme-eab"  # the purpose bound into a sealed EAB HMAC key


class AcmeExternalAccountKey(models.Model):
    """An external account binding key (RFC 8555 §7.3.4): a key id and an HMAC key, used once."""

    endpoint = models.ForeignKey(AcmeEndpoint, on_delete=models.CASCADE, related_name="eab_keys")
    key_id = models.CharField(max_length=64, unique=True)
    # RFC 8555 §7.3.4's MAC key, sealed under the KEK (pki.keys.encrypted.seal_secret), never in clear.
    sealed_hmac_key = models.BinaryField(editable=False, default=b"")
    kek_id = models.CharField(max_length=64, blank=True, default="", help_text="KEK that seals the HMAC key")
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    bound_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "ACME external account key"

    def __str__(self) -> str:
        return self.key_id

    def hmac_key(self) -> bytes:
        """The HMAC key, unsealed (needs the KEK in this process)."""
        from pki.keys.encrypted import open_secret

        return open_secret(
            purpose=EAB_SEAL_PURPOSE, name=self.key_id, kek_id=self.kek_id, sealed=bytes(self.sealed_hmac_key)
        )


class AccountStatus(models.TextChoices):
    """RFC 8555 §7.1.6 account states."""

    VALID = "valid", "valid"
    DEACTIVATED = "deactivated", "deactivated"
    REVOKED = "revoked", "revoked"


class AcmeAccount(models.Model):
    """An ACME account: its current public key (JWK) and contacts."""

    endpoint = models.ForeignKey(AcmeEndpoint, on_delete=models.PROTECT, related_name="accounts")
    token = models.CharField(max_length=32, unique=True, default=new_token)
    jwk = models.JSONField(help_text="the account's public key as a JWK")
    jwk_thumbprint = models.CharField(max_length=64, help_text="RFC 7638 SHA-256 thumbprint, base64url")
    status = models.CharField(max_length=16, choices=AccountStatus.choices, default=AccountStatus.VALID)
    contact = models.JSONField(default=list, blank=True)
    terms_agreed = models.BooleanField(default=False)
    eab_key = models.OneToOneField(
        AcmeExternalAccountKey, null=True, blank=True, on_delete=models.PROTECT, related_name="account"
    )
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "ACME account"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "jwk_thumbprint"], name="pki_acme_account_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.endpoint.name}/{self.token}"


class OrderStatus(models.TextChoices):
    """RFC 8555 §7.1.6 order states."""

    PENDING = "pending", "pending"
    READY = "ready", "ready"
    PROCESSING = "processing", "processing"
    VALID = "valid", "valid"
    INVALID = "invalid", "invalid"


class AcmeOrder(models.Model):
    """A request for one certificate naming a set of identifiers."""

    account = models.ForeignKey(AcmeAccount, on_delete=models.PROTECT, related_name="orders")
    token = models.CharField(max_length=32, unique=True, default=new_token)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    identifiers = models.JSONField(help_text='[{"type": "dns", "value": "www.example.test"}, …]')
    validity_days = models.PositiveIntegerField(null=True, blank=True)
    expires = models.DateTimeField()
    error = models.JSONField(null=True, blank=True)
    certificate = models.OneToOneField(
        "pki.Certificate", null=True, blank=True, on_delete=models.PROTECT, related_name="acme_order"
    )
    replaces = models.OneToOneField(
        "pki.Certificate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="acme_replaced_by",
        help_text="RFC 9773: the certificate this order renews",
    )
    csr_der = models.BinaryField(
        null=True, blank=True, help_text="the finalize CSR while a signing worker issues it (processing)"
    )
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "ACME order"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.token


class AuthorizationStatus(models.TextChoices):
    """RFC 8555 §7.1.6 authorization states."""

    PENDING = "pending", "pending"
    VALID = "valid", "valid"
    INVALID = "invalid", "invalid"
    DEACTIVATED = "deactivated", "deactivated"
    EXPIRED = "expired", "expired"
    REVOKED = "revoked", "revoked"


class AcmeAuthorization(models.Model):
    """The account's proof of control over one identifier of an order."""

    order = models.ForeignKey(AcmeOrder, on_delete=models.CASCADE, related_name="authorizations")
    token = models.CharField(max_length=32, unique=True, default=new_token)
    identifier_type = models.CharField(max_length=8)
    identifier_value = models.CharField(max_length=255, help_text="without the wildcard prefix")
    wildcard = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=AuthorizationStatus.choices, default=AuthorizationStatus.PENDING
    )
    expires = models.DateTimeField()

    class Meta:
        verbose_name = "ACME authorization"

    def __str__(self) -> str:
        return f"{self.identifier_type}:{self.identifier_value}"


class ChallengeType(models.TextChoices):
    """Challenge types KMI validates."""

    HTTP_01 = "http-01", "http-01"
    DNS_01 = "dns-01", "dns-01"
    TLS_ALPN_01 = "tls-alpn-01", "tls-alpn-01"


class ChallengeStatus(models.TextChoices):
    """RFC 8555 §7.1.6 challenge states."""

    PENDING = "pending", "pending"
    PROCESSING = "processing", "processing"
    VALID = "valid", "valid"
    INVALID = "invalid", "invalid"


class AcmeChallenge(models.Model):
    """One way to prove control of an authorization's identifier."""

    authorization = models.ForeignKey(AcmeAuthorization, on_delete=models.CASCADE, related_name="challenges")
    url_token = models.CharField(max_length=32, unique=True, default=new_token)
    type = models.CharField(max_length=16, choices=ChallengeType.choices)
    status = models.CharField(max_length=16, choices=ChallengeStatus.choices, default=ChallengeStatus.PENDING)
    token = models.CharField(max_length=64, help_text="RFC 8555 §8.1 token (base64url, 256 bits)")
    validated_at = models.DateTimeField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "ACME challenge"

    def __str__(self) -> str:
        return f"{self.type} {self.url_token}"


class AcmeNonce(models.Model):
    """A Replay-Nonce not yet used (the store when no Redis is configured)."""

    value = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "ACME nonce"

    def __str__(self) -> str:
        return self.value
