"""Deliveries of server-generated keys: one PKCS#12 download, then KMI's copy is gone."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class KeyDelivery(models.Model):
    """A key KMI generated for a client, waiting for (or past) its single PKCS#12 download."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.OneToOneField("pki.Key", on_delete=models.PROTECT, related_name="delivery")
    request = models.OneToOneField(
        "pki.CertificateRequest", on_delete=models.PROTECT, related_name="key_delivery"
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="key_deliveries",
    )
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivered_to = models.CharField(max_length=150, blank=True)
    # SHA-256 (hex) of the one-time download secret given to the requester when the delivery was
    # made; the hand-over needs the secret itself (knowing the delivery id is not enough).
    # Empty only for deliveries made before download secrets existed.
    secret_sha256 = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "key deliveries"

    def __str__(self) -> str:
        state = f"delivered {self.delivered_at:%Y-%m-%d}" if self.delivered_at else "waiting"
        return f"delivery of key {self.key_id} ({state})"
