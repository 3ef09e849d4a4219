"""What the console's dashboard reads instead of counting: per-CA certificate figures, worker
heartbeats and audit verifications, all written by workers (pki.health)."""

from __future__ import annotations

from django.db import models


class CertificateSummary(models.Model):
    """One CA's certificate figures as of ``computed_at`` (recomputed by a worker, never per page).

    ``counts`` holds ``valid``, ``revoked`` (revoked or on hold, not yet expired), ``expiring``
    (``{"7": n, "30": n, "90": n}``), ``expiry_weeks`` (26 counts, the weeks after
    ``computed_at``) and ``issued_days`` (30 counts, the days up to ``computed_at``, oldest first).
    """

    ca = models.OneToOneField(
        "pki.CertificateAuthority", on_delete=models.CASCADE, primary_key=True, related_name="summary"
    )
    computed_at = models.DateTimeField()
    counts = models.JSONField(default=dict)
    seconds = models.FloatField(default=0.0, help_text="how long the recount took")

    class Meta:
        verbose_name_plural = "certificate summaries"

    def __str__(self) -> str:
        return f"summary of CA {self.ca_id} at {self.computed_at:%Y-%m-%d %H:%M:%S}"


class WorkerHeartbeat(models.Model):
    """The last time a worker consuming ``queue`` ran the heartbeat task (signer and worker health)."""

    queue = models.CharField(max_length=32, primary_key=True)
    hostname = models.CharField(max_length=255, blank=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.queue} seen {self.seen_at:%Y-%m-%d %H:%M:%S}"


class AuditVerification(models.Model):
    """One run of ``pki.audit.verify_chain`` and what it found (kept for the dashboard and audit page)."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    actor = models.CharField(max_length=150)
    ok = models.BooleanField()
    streams = models.PositiveIntegerField()
    events = models.PositiveBigIntegerField()
    breaks = models.JSONField(default=list)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"audit verification {self.pk} ({'ok' if self.ok else 'BROKEN'})"
