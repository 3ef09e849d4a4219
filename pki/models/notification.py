"""Notifications: one row per (certificate, kind, threshold, channel), claimed before it is sent.

The unique ``idempotency_key`` makes "notify once" a database fact rather than a hope: two
workers that plan the same notice insert one row, and only the worker that flips the row from
pending to claimed (under ``SELECT … FOR UPDATE SKIP LOCKED``) sends it. The key travels with
the notice (``X-KMI-Delivery`` header, e-mail ``Message-ID``) so a receiver can drop the rare
redelivery after a worker died between sending and recording.
"""

from __future__ import annotations

from django.db import models


class NotificationKind(models.TextChoices):
    """What a notice is about."""

    CERTIFICATE_EXPIRY = "certificate_expiry", "Certificate nearing expiry"
    CA_EXPIRY = "ca_expiry", "CA certificate nearing expiry"
    CERTIFICATE_RENEWED = "certificate_renewed", "Certificate renewed (its successor delivered)"
    CA_COMPROMISE = "ca_compromise", "CA key compromised (alert)"


class NotificationChannel(models.TextChoices):
    """How a notice travels."""

    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class NotificationState(models.TextChoices):
    """Delivery state: pending → claimed → sent, or failed (retried until the attempt limit)."""

    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Claimed by a worker"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (will retry)"
    ABANDONED = "abandoned", "Abandoned (attempt limit reached)"


class NotificationRecord(models.Model):
    """One notice to one channel about one certificate at one threshold."""

    idempotency_key = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    certificate = models.ForeignKey("pki.Certificate", on_delete=models.CASCADE, related_name="notifications")
    threshold_days = models.PositiveIntegerField()
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    recipient = models.TextField(help_text="e-mail addresses (one a line) or the webhook URL")
    state = models.CharField(
        max_length=16, choices=NotificationState.choices, default=NotificationState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    payload = models.JSONField(
        default=dict, blank=True, help_text="what the notice says, for kinds that carry more than a date"
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["certificate", "kind", "threshold_days", "channel"],
                name="pki_notification_once",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="pki_notification_due")]

    def __str__(self) -> str:
        return f"{self.kind}@{self.threshold_days}d via {self.channel} ({self.state})"
