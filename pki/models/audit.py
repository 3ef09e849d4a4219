"""The audit trail: append-only events, hash-chained per stream.

Each event holds the SHA-256 of the event before it in its stream. Streams (a CA's events are
spread over a few lanes) keep the chain from becoming one global lock under concurrent issuance:
two writers only wait for each other when they pick the same lane.

A hash chain alone proves nothing to someone who can write the database (they can re-chain), so
each event also carries an HMAC under a key derived from ``SECRET_KEY`` (which the database never
holds), and checkpoints over every lane's head are signed with the audit key (a KMI key behind its
``KeyBackend``) and exported outside the database as they are made (``pki.audit_checkpoints``).
"""

from __future__ import annotations

from django.db import models


class AuditStream(models.Model):
    """The head of one hash chain: its last sequence number and hash."""

    name = models.CharField(max_length=96, primary_key=True)
    seq = models.BigIntegerField(default=0)
    head = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"{self.name}@{self.seq}"


class AuditEvent(models.Model):
    """One audited act: who did what to which object, when, chained to the one before."""

    stream = models.CharField(max_length=96)
    seq = models.BigIntegerField()
    timestamp = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=128)
    details = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # HMAC-SHA256 of the canonical body under the audit MAC key (pki.audit.event_mac).
    mac = models.CharField(max_length=64, default="")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="pki_audit_unique_seq"),
        ]
        # Plain B-tree indexes, without the LIKE-pattern twins db_index adds on PostgreSQL.
        indexes = [
            models.Index(fields=["action"], name="pki_audit_action"),
            models.Index(fields=["object_id"], name="pki_audit_object_id"),
        ]

    def __str__(self) -> str:
        when = f"{self.timestamp:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor} {self.action} {self.object_type}:{self.object_id}"


class AuditCheckpoint(models.Model):
    """A signed statement of every lane's head and count at one moment (append-only).

    ``payload`` is the canonical JSON that was signed (number, time, lanes, total, the previous
    checkpoint's digest, the signing key's SPKI SHA-256); the columns beside it repeat it for
    queries. Each checkpoint is also appended to a file outside the database as it is made.
    """

    number = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="audit_checkpoints")
    lanes = models.JSONField(default=dict, help_text="lane name -> [seq, head hash]")
    events = models.PositiveBigIntegerField()
    prev_digest = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the payload")
    payload = models.TextField()
    signature = models.TextField(help_text="base64 signature over the payload")

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"audit checkpoint {self.number} ({self.events} events)"
