"""Transparency: KMI's own RFC 6962 Merkle logs of the certificates it issues.

A certificate row's insert queues it (a database trigger writes a ``PendingLeaf`` in the same
transaction: a certificate committed is a leaf committed, whatever path issued it); the
sequencer then gives queued leaves contiguous indexes in every log that takes KMI's issuance,
keeps the completed subtree hashes (``MerkleNode``) and signs tree heads.
"""

from __future__ import annotations

from django.db import models


class TransparencyLog(models.Model):
    """An append-only Merkle tree (RFC 6962 §2.1) with its own ECDSA P-256 log key."""

    name = models.SlugField(max_length=63, unique=True, help_text="the URL segment: /ct/<name>/")
    description = models.CharField(max_length=200, blank=True)
    key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="+")
    log_id = models.BinaryField(help_text="SHA-256 of the log key's SubjectPublicKeyInfo (RFC 6962 §3.2)")
    mmd_seconds = models.PositiveIntegerField(default=60, help_text="maximum merge delay")
    feeds_issuance = models.BooleanField(
        default=True, help_text="every certificate KMI issues is appended (False: a sibling log)"
    )
    tree_size = models.BigIntegerField(default=0, help_text="leaves sequenced so far")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class PendingLeaf(models.Model):
    """A certificate committed but not yet sequenced into the logs (written by a trigger)."""

    # No foreign-key constraint or index beyond the primary key: this insert rides on every
    # issuance, so it is kept as cheap as an insert can be.
    certificate_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"certificate {self.certificate_id} (queued)"


class LogEntry(models.Model):
    """One leaf of a log: a certificate (its DER rebuilds the MerkleTreeLeaf) or raw leaf bytes."""

    log = models.ForeignKey(TransparencyLog, on_delete=models.PROTECT, related_name="+", db_index=False)
    leaf_index = models.BigIntegerField()
    certificate = models.ForeignKey(
        "pki.Certificate", on_delete=models.PROTECT, null=True, related_name="+", db_index=False
    )
    timestamp_ms = models.BigIntegerField(help_text="TimestampedEntry.timestamp, ms since the epoch")
    leaf_hash = models.BinaryField(help_text="SHA-256(0x00 || MerkleTreeLeaf)")
    leaf_input = models.BinaryField(
        null=True, help_text="MerkleTreeLeaf of an entry without a certificate (e.g. a checkpoint)"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["log", "leaf_index"], name="logentry_log_index")]
        indexes = [
            models.Index(fields=["log", "leaf_hash"], name="logentry_log_hash"),
            models.Index(fields=["certificate"], name="logentry_certificate"),
        ]

    def __str__(self) -> str:
        return f"{self.log_id}#{self.leaf_index}"


class MerkleNode(models.Model):
    """The hash of a complete subtree: level ``level`` (≥ 1), leaves [index·2^level, (index+1)·2^level)."""

    log = models.ForeignKey(TransparencyLog, on_delete=models.PROTECT, related_name="+", db_index=False)
    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["log", "level", "index"], name="merklenode_log_level_index")
        ]

    def __str__(self) -> str:
        return f"{self.log_id}:{self.level}/{self.index}"


class SignedTreeHead(models.Model):
    """A tree head the log signed (RFC 6962 §3.5): size, time, root and the log key's signature."""

    log = models.ForeignKey(TransparencyLog, on_delete=models.PROTECT, related_name="tree_heads")
    tree_size = models.BigIntegerField()
    timestamp_ms = models.BigIntegerField()
    root_hash = models.BinaryField()
    signature = models.BinaryField(help_text="DER ECDSA signature over the TreeHeadSignature structure")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["log", "timestamp_ms"], name="sth_log_timestamp"),
        ]
        indexes = [models.Index(fields=["log", "tree_size"], name="sth_log_size")]

    def __str__(self) -> str:
        return f"{self.log_id}: {self.tree_size} leaves at {self.timestamp_ms}"
