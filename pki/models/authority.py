"""Certificate authorities: roots and intermediates, their keys and their own certificates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509
from django.db import models

if TYPE_CHECKING:
    from pki.models.certificate import Certificate


class CAState(models.TextChoices):
    """Whether a CA may issue."""

    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled (issues nothing)"
    RETIRED = "retired", "Retired (signs CRLs only)"


class CertificateAuthority(models.Model):
    """A root (no parent) or intermediate CA."""

    name = models.SlugField(max_length=64, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    state = models.CharField(max_length=16, choices=CAState.choices, default=CAState.ACTIVE)
    key = models.ForeignKey("pki.Key", on_delete=models.PROTECT, related_name="authorities")
    certificate = models.OneToOneField(
        "pki.Certificate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="authority",
        help_text="this CA's own certificate (issued by its parent, or self-signed)",
    )
    path_length = models.PositiveIntegerField(null=True, blank=True)
    name_constraints = models.JSONField(
        default=dict, blank=True, help_text='{"permitted": ["dns:example.test"], "excluded": []}'
    )
    crl_shards = models.PositiveIntegerField(
        default=1, help_text="number of CRL partitions new certificates are spread over (1: one full CRL)"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        verbose_name = "certificate authority"
        verbose_name_plural = "certificate authorities"

    def __str__(self) -> str:
        return self.name

    @property
    def is_root(self) -> bool:
        """True for a self-signed CA."""
        return self.parent_id is None

    def own_certificate(self) -> Certificate:
        """Return this CA's certificate row (set once the CA is created)."""
        if self.certificate is None:
            raise ValueError(f"CA {self.name} has no certificate yet")
        return self.certificate

    def x509_certificate(self) -> x509.Certificate:
        """Return this CA's certificate as a ``cryptography`` object (cached on the instance)."""
        cached: x509.Certificate | None = getattr(self, "_x509_cache", None)
        if cached is None:
            cached = self.own_certificate().x509()
            self._x509_cache = cached
        return cached

    def chain(self) -> list[x509.Certificate]:
        """Return this CA's certificate followed by its parents' up to the root."""
        out: list[x509.Certificate] = []
        node: CertificateAuthority | None = self
        while node is not None:
            out.append(node.x509_certificate())
            node = node.parent
        return out
