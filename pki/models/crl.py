"""Certificate revocation lists: each published CRL, and the per-scope counter that numbers them.

A *scope* is one CA generation's full CRL (``shard`` 0) or one partition of it (``shard`` n > 0,
the certificates whose CRL Distribution Point names ``/crl/<ca>-<n>.crl``). Each generation (CA
key) signs the CRLs of what it issued, at its own URLs (``pki.locations.repository_name``).
"""

from __future__ import annotations

from django.db import models


class CRLScope(models.Model):
    """The CRL number counter of one scope; its row is locked while a CRL of the scope is made.

    RFC 5280 §5.2.3: the CRL number increases monotonically for a given CRL issuer and scope.
    The row is locked with SELECT … FOR UPDATE by the publisher and the new number is committed
    together with the CRL, so two workers never use one number twice.
    """

    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.CASCADE, related_name="crl_scopes")
    generation = models.PositiveIntegerField(default=1, db_default=1)
    shard = models.PositiveIntegerField(default=0, help_text="0: the full CRL; n > 0: partition n")
    last_crl_number = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ca", "generation", "shard"], name="pki_crlscope_unique_gen")
        ]

    def __str__(self) -> str:
        return f"{self.ca_id}.g{self.generation}/{self.shard}#{self.last_crl_number}"


class CRLStaleMark(models.Model):
    """A note that a scope's CRL no longer matches the database (a status changed after it).

    Marks are inserted (never updated, so they never wait for a publisher's lock) by the
    receiver of ``certificate_status_changed``; ``publish_crl`` deletes the marks it has seen.
    """

    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.CASCADE, related_name="+")
    generation = models.PositiveIntegerField(default=1, db_default=1)
    shard = models.PositiveIntegerField(default=0)
    marked_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["ca", "generation", "shard"], name="pki_crlstale_scope_gen")]

    def __str__(self) -> str:
        return f"stale {self.ca_id}/{self.shard} since {self.marked_at:%Y-%m-%d %H:%M:%S}"


class CertificateRevocationListQuerySet(models.QuerySet["CertificateRevocationList"]):
    """Named read filters over published CRLs."""

    def latest_for(self, ca_id: int, shard: int = 0, generation: int = 1) -> CertificateRevocationList | None:
        """The newest CRL of one scope (None before the first publication)."""
        return self.filter(ca_id=ca_id, generation=generation, shard=shard).order_by("-crl_number").first()


class CertificateRevocationList(models.Model):
    """One signed CRL as published: its DER and the fields the repository and scheduler need."""

    ca = models.ForeignKey("pki.CertificateAuthority", on_delete=models.CASCADE, related_name="crls")
    generation = models.PositiveIntegerField(default=1, db_default=1, help_text="the CA key that signed it")
    shard = models.PositiveIntegerField(default=0, help_text="0: the full CRL; n > 0: partition n")
    crl_number = models.BigIntegerField()
    this_update = models.DateTimeField()
    next_update = models.DateTimeField()
    der = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    entry_count = models.PositiveIntegerField()
    published_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    objects = CertificateRevocationListQuerySet.as_manager()

    class Meta:
        verbose_name = "certificate revocation list"
        constraints = [
            models.UniqueConstraint(
                fields=["ca", "generation", "shard", "crl_number"], name="pki_crl_unique_number_gen"
            ),
        ]

    def __str__(self) -> str:
        part = f" shard {self.shard}" if self.shard else ""
        gen = f" generation {self.generation}" if self.generation > 1 else ""
        return f"CRL {self.crl_number} of CA {self.ca_id}{gen}{part}"
