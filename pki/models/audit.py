"""The audit trail: append-only events, hash-chained per stream.

Each event holds the SHA-256 of the event before it in its stream. Streams (a CA's events are
spread over a few lanes) keep the chain from becoming one global lock under concurrent issuance:
two writers only wait for each other when they pick the same lane.
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
