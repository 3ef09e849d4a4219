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

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "key deliveries"

    def __str__(self) -> str:
        state = f"delivered {self.delivered_at:%Y-%m-%d}" if self.delivered_at else "waiting"
        return f"delivery of key {self.key_id} ({state})"
