"""OCSP: each CA's delegated responder and the responses signed in advance for its certificates."""

from __future__ import annotations

import datetime as dt

from django.db import models


class OCSPResponder(models.Model):
    """The current delegated OCSP responder of one CA generation (RFC 6960 §4.2.2.2).

    The certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) is issued by that generation's key
    to a key KMI generated for the purpose, so the CA key never signs OCSP responses. After a
    rollover the previous generation keeps its own responder for what it issued (a responder
    certificate must come from the key that signed the certificates it answers for).
    """

    ca = models.ForeignKey(
        "pki.CertificateAuthority", on_delete=models.CASCADE, related_name="ocsp_responders"
    )
    generation = models.PositiveIntegerField(default=1, db_default=1)
    certificate = models.ForeignKey("pki.Certificate", on_delete=models.PROTECT, related_name="+")
    key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "OCSP responder"
        constraints = [
            models.UniqueConstraint(fields=["ca", "generation"], name="pki_ocsp_responder_unique_gen")
        ]

    def __str__(self) -> str:
        return f"OCSP responder of {self.ca_id} ({self.certificate_id})"


class OCSPResponseQuerySet(models.QuerySet["OCSPResponse"]):
    """Named filters over stored responses."""

    def current(self, now: dt.datetime) -> OCSPResponseQuerySet:
        """Responses whose nextUpdate is still ahead of ``now``."""
        return self.filter(next_update__gt=now)


class OCSPResponse(models.Model):
    """A signed OCSPResponse for one certificate and one CertID hash algorithm (durable copy).

    Redis holds the same bytes for the hot path when ``REDIS_URL`` is set; this table is the
    fallback and survives a Redis restart.
    """

    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.CASCADE, related_name="+")
    certificate = models.ForeignKey("pki.Certificate", on_delete=models.CASCADE, related_name="+")
    serial = models.CharField(max_length=40, help_text="lower-case hex, as on Certificate")
    hash_algorithm = models.CharField(max_length=8, help_text="hash of the CertID: sha1 or sha256")
    revocation_reason = models.CharField(
        max_length=24, blank=True, help_text="the certificate's revocation_reason when signed ('' = good)"
    )
    der = models.BinaryField()
    produced_at = models.DateTimeField()
    this_update = models.DateTimeField()
    next_update = models.DateTimeField(db_index=True)

    objects = OCSPResponseQuerySet.as_manager()

    class Meta:
        verbose_name = "OCSP response"
        constraints = [
            models.UniqueConstraint(
                fields=["ca", "serial", "hash_algorithm"], name="pki_ocsp_response_unique"
            ),
        ]
        indexes = [models.Index(fields=["ca", "this_update"], name="pki_ocsp_ca_this_update")]

    def __str__(self) -> str:
        return f"OCSP response {self.ca_id}/{self.serial}/{self.hash_algorithm}"
