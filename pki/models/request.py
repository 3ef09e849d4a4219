"""Certificate requests: a CSR waiting for, or past, its approval."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RequestState(models.TextChoices):
    """Life of a certificate request."""

    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ISSUED = "issued", "Issued"
    FAILED = "failed", "Failed"


class CertificateRequest(models.Model):
    """A CSR submitted for a CA and a profile."""

    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.PROTECT, related_name="requests")
    profile = models.ForeignKey("pki.Profile", on_delete=models.PROTECT, related_name="requests")
    csr_der = models.BinaryField()
    subject = models.TextField(blank=True)
    san_text = models.TextField(blank=True)
    key_fingerprint = models.CharField(max_length=64)
    validity_days = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=RequestState.choices, default=RequestState.PENDING)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="certificate_requests",
    )
    requested_by = models.CharField(max_length=150, help_text="actor that submitted it")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reviewed_requests",
    )
    reviewed_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    # What the requester asked for the certificate beyond the CSR (kept until it is issued).
    auto_renew = models.BooleanField(null=True, blank=True, help_text="none: the profile's default")
    renew_before_days = models.PositiveIntegerField(null=True, blank=True)
    owner_email = models.EmailField(blank=True, db_default="", help_text="who hears about the certificate")
    owner_webhook_url = models.URLField(blank=True, max_length=500, db_default="")
    renews = models.ForeignKey(
        "pki.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="renewal_requests",
        help_text="the certificate this request renews (a renewal under a profile that needs approval)",
    )
    created_at = models.DateTimeField()
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Plain B-tree indexes: Django's db_index on a CharField adds a LIKE-pattern twin on
        # PostgreSQL that no query here uses and every insert pays for.
        indexes = [
            models.Index(fields=["key_fingerprint"], name="pki_request_key_fingerprint"),
            models.Index(fields=["state"], name="pki_request_state"),
        ]

    def __str__(self) -> str:
        return f"request {self.pk} ({self.state}) {self.subject}"


class Approval(models.Model):
    """One reviewer's approval of a pending request; a profile may need several, by distinct people."""

    request = models.ForeignKey(CertificateRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the reviewer's account (none: an operator at the command line)",
    )
    approved_by = models.CharField(max_length=150, help_text="the audit actor that approved")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "approver"],
                condition=models.Q(approver__isnull=False),
                name="pki_approval_one_per_reviewer",
            ),
            models.UniqueConstraint(
                fields=["request", "approved_by"],
                condition=models.Q(approver__isnull=True),
                name="pki_approval_one_per_actor",
            ),
        ]

    def __str__(self) -> str:
        return f"request {self.request_id} approved by {self.approved_by}"
