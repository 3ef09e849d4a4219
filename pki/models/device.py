"""Device enrollment: EST labels (RFC 7030) and their one-time enrollment codes; SCEP labels
(RFC 8894) with their RA key, one-time challenge passwords and the transactions a client polls."""

from __future__ import annotations

from django.db import models


class EstLabel(models.Model):
    """An EST label (RFC 7030 §3.2.2 "additional path segment"): binds a CA and a profile, and
    names the CAs whose certificates authenticate a device by TLS client certificate."""

    name = models.SlugField(max_length=64, unique=True)
    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey("pki.Profile", on_delete=models.PROTECT, related_name="+")
    client_cas = models.ManyToManyField(
        "pki.CertificateAuthority",
        blank=True,
        related_name="+",
        help_text="CAs whose (unrevoked) certificates authenticate a device by TLS client certificate",
    )
    serverkeygen = models.BooleanField(
        default=False,
        help_text="serverkeygen may return the new private key as PKCS#8 over the TLS channel",
    )
    is_default = models.BooleanField(
        default=False, help_text="answers /.well-known/est/ without a label (at most one)"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        verbose_name = "EST label"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="pki_est_one_default_label"
            )
        ]

    def __str__(self) -> str:
        return self.name


class EnrollmentCode(models.Model):
    """A one-time EST credential of one device: HTTP Basic user = ``id``, password = the code,
    of which only the SHA-256 is kept. ``request`` is what it was used for (a device that is
    told to come back later, RFC 7030 §4.2.3, repeats its request with the same code)."""

    id = models.CharField(max_length=32, primary_key=True)
    label = models.ForeignKey(EstLabel, on_delete=models.CASCADE, related_name="codes")
    secret_sha256 = models.CharField(max_length=64)
    not_after = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    request = models.ForeignKey(
        "pki.CertificateRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "EST enrollment code"

    def __str__(self) -> str:
        return f"{self.label.name}/{self.id}"


class ScepLabel(models.Model):
    """A SCEP service at ``/scep/<name>``: CA, profile, challenge policy and the RA key pair that
    decrypts requests and signs replies (RSA, RFC 8894 §2.1; held by the KeyBackend)."""

    name = models.SlugField(max_length=64, unique=True)
    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey("pki.Profile", on_delete=models.PROTECT, related_name="+")
    static_challenge = models.CharField(
        max_length=200, blank=True, help_text="hash of a static challenge password (empty: one-time only)"
    )
    ra_key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="+")
    ra_certificate = models.ForeignKey("pki.Certificate", on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        verbose_name = "SCEP label"

    def __str__(self) -> str:
        return self.name


class ScepChallenge(models.Model):
    """A one-time SCEP challenge password (only its SHA-256 is kept)."""

    label = models.ForeignKey(ScepLabel, on_delete=models.CASCADE, related_name="challenges")
    secret_sha256 = models.CharField(max_length=64, unique=True)
    not_after = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "SCEP challenge"

    def __str__(self) -> str:
        return f"{self.label.name}/{self.pk}"


class ScepTransaction(models.Model):
    """A SCEP transaction (RFC 8894 §3.2.1.1 transactionID): the request it stored (or, for a
    renewal, the certificate it issued), so CertPoll and a retransmission find it; bound to the
    key that signed the first message."""

    label = models.ForeignKey(ScepLabel, on_delete=models.CASCADE, related_name="transactions")
    transaction_id = models.CharField(max_length=128)
    signer_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the certificate that signed it")
    request = models.ForeignKey(
        "pki.CertificateRequest", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    certificate = models.ForeignKey(
        "pki.Certificate", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "SCEP transaction"
        constraints = [
            models.UniqueConstraint(
                fields=["label", "transaction_id", "signer_sha256"], name="pki_scep_unique_transaction"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label.name}/{self.transaction_id}"
