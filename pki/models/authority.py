"""Certificate authorities: roots and intermediates, their keys and their own certificates.

A CA is the stable identity operators name (grants, profiles, ACME endpoints, URLs). Its key and
certificate change at a rollover: each key is a *generation* (``CAGeneration``). The CA row
points at the current generation's key and certificate, so issuance reads nothing more; older
generations keep answering (CRLs, OCSP) for what they issued, each at its own URLs
(``pki.locations.repository_name``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import models

from pki.models.key import TwoPersonState

if TYPE_CHECKING:
    from pki.models.certificate import Certificate


class CAState(models.TextChoices):
    """Whether a CA may issue."""

    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled (issues nothing)"
    RETIRED = "retired", "Retired (signs CRLs only)"
    PENDING = "pending", "Waiting for its certificate (offline parent)"
    EXTERNAL = "external", "External (certificate only: KMI holds no key)"


class CertificateAuthority(models.Model):
    """A root (no parent) or intermediate CA."""

    name = models.SlugField(max_length=64, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    state = models.CharField(max_length=16, choices=CAState.choices, default=CAState.ACTIVE)
    key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="authorities")
    certificate = models.OneToOneField(
        "pki.Certificate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="authority",
        help_text="this CA's own certificate (issued by its parent, or self-signed)",
    )
    path_length = models.PositiveIntegerField(null=True, blank=True)
    name_constraints = models.JSONField(
        default=dict, blank=True, help_text='{"permitted": ["dns:example.test"], "excluded": []}'
    )
    crl_shards = models.PositiveIntegerField(
        default=1, help_text="number of CRL partitions new certificates are spread over (1: one full CRL)"
    )
    # Contacts for this CA's own expiry alerts, and the fallback for certificates it issued
    # that name no owner of their own.
    owner_email = models.EmailField(blank=True)
    owner_webhook_url = models.URLField(blank=True, max_length=500)
    created_at = models.DateTimeField()
    generation = models.PositiveIntegerField(
        default=1, db_default=1, help_text="number of the current generation (1 until the first rollover)"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "certificate authority"
        verbose_name_plural = "certificate authorities"

    def __str__(self) -> str:
        return self.name

    @property
    def is_root(self) -> bool:
        """True for a self-signed CA."""
        return self.parent_id is None

    @property
    def repository_name(self) -> str:
        """The name of the current generation in URLs (CRL, caIssuers, OCSP)."""
        from pki.locations import repository_name

        return repository_name(self.name, self.generation)

    @property
    def holds_key(self) -> bool:
        """False for a CA imported as a certificate only (a parent or trust anchor KMI cannot sign for)."""
        return self.state != CAState.EXTERNAL

    def generation_certificate(self, number: int) -> Certificate | None:
        """The certificate of generation ``number`` (the current one without a query)."""
        if number == self.generation and self.certificate_id is not None:
            return self.certificate
        row = CAGeneration.objects.filter(ca_id=self.pk, number=number).select_related("certificate").first()
        return row.certificate if row is not None else None

    def own_certificate(self) -> Certificate:
        """Return this CA's certificate row (set once the CA is created)."""
        if self.certificate is None:
            raise ValueError(f"CA {self.name} has no certificate yet")
        return self.certificate

    def x509_certificate(self) -> x509.Certificate:
        """Return this CA's certificate as a ``cryptography`` object (cached on the instance)."""
        # Keyed by the certificate row: a rollover or renewal (or refresh_from_db) moves it.
        cached: tuple[int | None, x509.Certificate] | None = getattr(self, "_x509_cache", None)
        if cached is None or cached[0] != self.certificate_id:
            cached = (self.certificate_id, self.own_certificate().x509())
            self._x509_cache = cached
        return cached[1]

    def chain(self) -> list[x509.Certificate]:
        """Return this CA's certificate followed by its issuers' up to the root.

        Each step follows the generation that signed the certificate before it: an intermediate
        certified before its parent's rollover chains to the parent's previous generation.
        """
        return certificate_chain(self.own_certificate())


def certificate_chain(certificate: Certificate) -> list[x509.Certificate]:
    """Return ``certificate`` followed by the certificates of the CA generations above it."""
    return [row.x509() for row in certificate_chain_rows(certificate)]


def certificate_chain_rows(certificate: Certificate) -> list[Certificate]:
    """The rows of ``certificate_chain``: each step is the generation ``issuer_generation`` of
    the issuing CA ``ca``; a self-signed certificate ends the chain."""
    out = [certificate]
    node = certificate
    for _ in range(32):  # RFC 5280 puts no bound on depth; a loop in the records must not hang
        issuer = node.ca
        if issuer is None:
            break
        issuer_cert = issuer.generation_certificate(node.issuer_generation)
        if issuer_cert is None or issuer_cert.key_fingerprint == node.key_fingerprint:
            break  # a self-signed certificate (signed by its own key) ends the chain
        out.append(issuer_cert)
        node = issuer_cert
    return out


class GenerationState(models.TextChoices):
    """Life of one CA key (a generation); NIST SP 800-57 key states are on the key itself."""

    PENDING = "pending", "Pending (issuance moves here at activates_at)"
    CURRENT = "current", "Current (issues)"
    PREVIOUS = "previous", "Previous (answers for what it issued: CRLs, OCSP)"
    RETIRED = "retired", "Retired (everything it issued has expired)"


class CAGeneration(models.Model):
    """One key of a CA and the certificate that certifies it: the first at creation, one more at
    each rollover. ``renew_ca`` re-certifies the same key (same generation, new certificate).

    For a root, a rollover also makes two link certificates (self-issued, RFC 5280 §6.1): the new
    key certified by the previous one (``link_from_previous``: relying parties that trust the
    previous root accept the new generation) and the previous key certified by the new one
    (``link_to_previous``: relying parties that trust the new root accept the old generation).
    """

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="generations")
    number = models.PositiveIntegerField()
    key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="ca_generations")
    certificate = models.ForeignKey(
        "pki.Certificate", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    state = models.CharField(max_length=16, choices=GenerationState.choices, default=GenerationState.CURRENT)
    activates_at = models.DateTimeField(null=True, blank=True, help_text="when issuance moves here")
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    link_from_previous = models.ForeignKey(
        "pki.Certificate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="this key certified by the previous generation's key (roots)",
    )
    link_to_previous = models.ForeignKey(
        "pki.Certificate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the previous generation's key certified by this key (roots)",
    )
    request_der = models.BinaryField(
        default=b"", blank=True, help_text="the CSR sent to an issuer outside KMI (offline parent)"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["ca_id", "number"]
        constraints = [models.UniqueConstraint(fields=["ca", "number"], name="pki_cageneration_unique")]

    def __str__(self) -> str:
        return f"{self.ca_id} generation {self.number} ({self.state})"

    @property
    def repository_name(self) -> str:
        """This generation's name in URLs: the CA's name for the first, ``<name>.g<n>`` after."""
        from pki.locations import repository_name

        return repository_name(self.ca.name, self.number)

    def request_der_pem(self) -> bytes:
        """The CSR sent to an outside issuer, as PEM (RFC 7468)."""
        return x509.load_der_x509_csr(bytes(self.request_der)).public_bytes(serialization.Encoding.PEM)

    def x509_certificate(self) -> x509.Certificate:
        """The certificate of this generation's key (cached on the instance)."""
        cached: x509.Certificate | None = getattr(self, "_x509_cache", None)
        if cached is None:
            if self.certificate is None:
                raise ValueError(f"generation {self.number} of CA {self.ca_id} has no certificate")
            cached = self.certificate.x509()
            self._x509_cache = cached
        return cached


class CACreation(models.Model):
    """A CA that an administrator asked for and that waits for the approval of other administrators
    (``KMI_CA_CREATION_APPROVALS``) before its key is made (``pki.ca_creation``).

    ``approvals`` lists who approved, in order: ``{"user": id, "by": actor, "at": ISO time}``.
    """

    name = models.SlugField(max_length=64)
    parent = models.ForeignKey(
        CertificateAuthority, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    subject = models.TextField()
    key_type = models.CharField(max_length=16)
    validity_days = models.PositiveIntegerField()
    path_length = models.PositiveIntegerField(null=True, blank=True)
    name_constraints = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=TwoPersonState.choices, default=TwoPersonState.PENDING)
    approvals_required = models.PositiveIntegerField(help_text="distinct other administrators who approve")
    approvals = models.JSONField(default=list, blank=True)
    requester = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by = models.CharField(max_length=150, help_text="audit actor who asked")
    decided_by = models.CharField(max_length=150, blank=True, help_text="who approved last or rejected")
    reason = models.TextField(blank=True, help_text="why it was rejected or failed")
    ca = models.OneToOneField(
        CertificateAuthority, null=True, blank=True, on_delete=models.PROTECT, related_name="creation"
    )
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(state__in=["pending", "approved"]),
                name="pki_cacreation_one_open_per_name",
            )
        ]

    def __str__(self) -> str:
        return f"creation of CA {self.name} ({self.state})"

    def approver_ids(self) -> list[int]:
        """Accounts that approved (command-line approvals have none)."""
        return [int(a["user"]) for a in self.approvals if a.get("user") is not None]
