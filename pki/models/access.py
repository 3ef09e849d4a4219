"""Access: role grants (who may do what, on which CA and profile) and per-user API tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    """The roles KMI knows; CA operators and requesters are granted per CA (and profile)."""

    ADMINISTRATOR = "administrator", "Administrator"
    CA_OPERATOR = "ca_operator", "CA operator"
    REQUESTER = "requester", "Requester"
    AUDITOR = "auditor", "Auditor"
    KEY_RECOVERY_OFFICER = "key_recovery_officer", "Key recovery officer"


class RoleGrant(models.Model):
    """One role given to one user: ``ca`` for operators and requesters, ``profile`` for requesters."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kmi_grants")
    role = models.CharField(max_length=24, choices=Role.choices)
    ca = models.ForeignKey(
        "pki.CertificateAuthority", null=True, blank=True, on_delete=models.CASCADE, related_name="grants"
    )
    profile = models.ForeignKey(
        "pki.Profile", null=True, blank=True, on_delete=models.CASCADE, related_name="grants"
    )
    granted_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["user_id", "role"]
        # One row per grant; partial constraints because NULLs are distinct in a plain one.
        constraints = [
            models.UniqueConstraint(
                fields=["user", "role"],
                condition=Q(ca__isnull=True, profile__isnull=True),
                name="pki_rolegrant_unique_global",
            ),
            models.UniqueConstraint(
                fields=["user", "role", "ca"],
                condition=Q(ca__isnull=False, profile__isnull=True),
                name="pki_rolegrant_unique_ca",
            ),
            models.UniqueConstraint(
                fields=["user", "role", "ca", "profile"],
                condition=Q(ca__isnull=False, profile__isnull=False),
                name="pki_rolegrant_unique_pair",
            ),
        ]

    def __str__(self) -> str:
        scope = "/".join(str(x) for x in (self.ca, self.profile) if x is not None)
        return f"{self.user} {self.role}{' on ' + scope if scope else ''}"


class ApiToken(models.Model):
    """A per-user API token: only a lookup prefix and the SHA-256 of its secret are stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kmi_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, help_text="public lookup id (kmi_<prefix>_…)")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the secret, hex")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"kmi_{self.prefix}_… ({self.user})"
