"""Certificates: every certificate KMI signed, with indexed columns for search and status."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from django.conf import settings
from django.db import models
from django.db.models import Value
from django.db.models.functions import Concat


class RevocationReason(models.TextChoices):
    """CRLReason of RFC 5280 §5.3.1 (value 7 is unused)."""

    UNSPECIFIED = "unspecified", "unspecified"
    KEY_COMPROMISE = "keyCompromise", "keyCompromise"
    CA_COMPROMISE = "cACompromise", "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged", "affiliationChanged"
    SUPERSEDED = "superseded", "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation", "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold", "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL", "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn", "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise", "aACompromise"

    def x509(self) -> x509.ReasonFlags:
        """Return the matching ``cryptography`` flag."""
        return _REASON_FLAGS[self.value]

    @property
    def code(self) -> int:
        """The CRLReason ENUMERATED value (RFC 5280 §5.3.1), as CRLs and OCSP encode it."""
        return _REASON_CODES[self.value]

    @classmethod
    def from_code(cls, code: int) -> RevocationReason:
        """The reason whose CRLReason value is ``code`` (KeyError for 7, unused, or any other)."""
        return cls(_REASON_NAMES[code])


# The one table of RFC 5280 §5.3.1 CRLReason values (7 is unused).
_REASON_CODES = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}
_REASON_NAMES = {code: name for name, code in _REASON_CODES.items()}


_REASON_FLAGS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "removeFromCRL": x509.ReasonFlags.remove_from_crl,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}


class CertificateQuerySet(models.QuerySet["Certificate"]):
    """Named read filters; time-dependent ones take ``now``."""

    def valid(self, now: dt.datetime) -> CertificateQuerySet:
        """Unrevoked certificates inside their validity period at ``now``."""
        return self.filter(revoked_at__isnull=True, not_before__lte=now, not_after__gt=now)

    def expired(self, now: dt.datetime) -> CertificateQuerySet:
        """Certificates whose notAfter has passed at ``now``."""
        return self.filter(not_after__lte=now)

    def expiring(self, *, before: dt.datetime, now: dt.datetime) -> CertificateQuerySet:
        """Unrevoked certificates still valid at ``now`` whose notAfter falls before ``before``."""
        return self.valid(now).filter(not_after__lte=before)

    def revoked(self) -> CertificateQuerySet:
        """Certificates that are revoked or on hold."""
        return self.filter(revoked_at__isnull=False)

    def matching(
        self,
        *,
        now: dt.datetime,
        state: str = "",
        expiring_before: dt.datetime | None = None,
        serial: str = "",
        q: str = "",
    ) -> CertificateQuerySet:
        """The search filters of the API and the console: ``state`` (valid, expired, revoked),
        notAfter before ``expiring_before`` (still valid), a hex ``serial`` (colons allowed), and
        ``q``, a case-insensitive substring of the subject, a SAN or the serial (trigram-indexed
        on PostgreSQL, migration 0010; the first 200 characters)."""
        qs = self
        if state == "valid":
            qs = qs.valid(now)
        elif state == "expired":
            qs = qs.expired(now)
        elif state == "revoked":
            qs = qs.revoked()
        elif state:
            raise ValueError(f"unknown certificate state {state!r}")
        if expiring_before is not None:
            qs = qs.expiring(before=expiring_before, now=now)
        if serial:
            qs = qs.filter(serial=serial.lower().replace(":", ""))
        if q:
            qs = qs.filter(search_text__icontains=q[:200])
        return qs

    def with_key(self, spki_sha256: str) -> CertificateQuerySet:
        """Certificates carrying the public key with this SPKI fingerprint."""
        return self.filter(key_fingerprint=spki_sha256)


class Certificate(models.Model):
    """A certificate KMI signed: DER plus the columns searches and status checks need."""

    # Indexes are chosen for the hot insert path: (ca, id), (ca, serial) and (ca, revoked_at)
    # below cover every lookup by CA, so the FK has none of its own; the same goes for profile.
    # Hash columns get plain B-tree indexes (Meta) without Django's LIKE-pattern twins.
    ca = models.ForeignKey(
        "pki.CertificateAuthority",
        on_delete=models.PROTECT,
        related_name="issued",
        null=True,
        db_index=False,
        help_text="the issuing CA (for a root's own certificate, the root itself)",
    )
    serial = models.CharField(max_length=40, help_text="lower-case hex, unique per CA")
    der = models.BinaryField()
    subject = models.TextField(help_text="RFC 4514 string")
    san_text = models.TextField(blank=True, help_text="SANs as 'type:value' lines, for search")
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    fingerprint_sha256 = models.CharField(max_length=64)
    key_fingerprint = models.CharField(max_length=64, help_text="SHA-256 of SPKI")
    key = models.ForeignKey(
        "pki.Key", null=True, blank=True, on_delete=models.SET_NULL, related_name="certificates"
    )
    is_ca = models.BooleanField(default=False)
    profile = models.ForeignKey(
        "pki.Profile", null=True, blank=True, on_delete=models.PROTECT, db_index=False
    )
    request = models.OneToOneField(
        "pki.CertificateRequest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="certificate",
    )
    renewed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="renewals"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="kmi_certificates",
        help_text="the user who requested it (renewals inherit it)",
    )
    auto_renew = models.BooleanField(default=False)
    renew_before_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="auto-renewal this many days before notAfter (none: KMI_AUTO_RENEW_DAYS)",
    )
    # Who hears about this certificate's expiry (empty: the issuing CA's contacts, if any).
    owner_email = models.EmailField(blank=True)
    owner_webhook_url = models.URLField(blank=True, max_length=500)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=24, choices=RevocationReason.choices, blank=True)
    invalidity_date = models.DateTimeField(null=True, blank=True)
    crl_shard = models.PositiveIntegerField(
        null=True, blank=True, help_text="CRL partition its CDP names (None: the CA's full CRL)"
    )
    issuer_generation = models.PositiveIntegerField(
        default=1, db_default=1, help_text="the generation (key) of the issuing CA that signed it"
    )
    created_at = models.DateTimeField()
    # What the API's ``q=`` and the admin's search box look in, kept by the database. On
    # PostgreSQL a trigram index on upper(search_text) (migration 0010) serves case-insensitive
    # substring search at millions of rows: one index, not one per column.
    search_text = models.GeneratedField(
        expression=Concat(
            "subject", Value("\n"), "san_text", Value("\n"), "serial", output_field=models.TextField()
        ),
        output_field=models.TextField(),
        db_persist=True,
        help_text="subject, SAN lines and serial, for search",
    )

    objects = CertificateQuerySet.as_manager()

    class Meta:
        ordering = ["-not_after"]
        constraints = [
            models.UniqueConstraint(fields=["ca", "serial"], name="pki_certificate_unique_serial"),
            models.UniqueConstraint(fields=["fingerprint_sha256"], name="pki_cert_unique_fingerprint"),
        ]
        indexes = [
            models.Index(fields=["ca", "revoked_at"], name="pki_cert_ca_revoked"),
            # Keyset (cursor) pagination by id within one CA stays an index scan at millions of rows.
            models.Index(fields=["ca", "id"], name="pki_cert_ca_id"),
            models.Index(fields=["profile", "id"], name="pki_cert_profile_id"),
            models.Index(fields=["key_fingerprint"], name="pki_cert_key_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.subject or self.san_text.splitlines()[0:1]} ({self.serial})"

    def x509(self) -> x509.Certificate:
        """Return the certificate as a ``cryptography`` object."""
        return x509.load_der_x509_certificate(bytes(self.der))

    @property
    def serial_int(self) -> int:
        """The serial number as an integer."""
        return int(self.serial, 16)

    def status(self, now: dt.datetime) -> str:
        """Return ``revoked``, ``expired``, ``not_yet_valid`` or ``valid`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.not_after <= now:
            return "expired"
        if self.not_before > now:
            return "not_yet_valid"
        return "valid"
