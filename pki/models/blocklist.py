"""The compromised-key blocklist: public keys KMI never certifies again, by SPKI SHA-256."""

from __future__ import annotations

from django.db import models


class BlockedKey(models.Model):
    """A public key revoked for keyCompromise (or a compromised CA key): no path certifies it again."""

    spki_sha256 = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of the SPKI, lower-case hex"
    )
    reason = models.CharField(max_length=32, help_text="RFC 5280 reason (keyCompromise, cACompromise)")
    source = models.CharField(
        max_length=64, help_text="what blocked it: revoke_key, certificate.revoked, key.compromised"
    )
    ca = models.ForeignKey(
        "pki.CertificateAuthority",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the CA of the certificate or key that was compromised, when known",
    )
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"blocked key {self.spki_sha256[:16]} ({self.reason})"
