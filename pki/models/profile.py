"""Profiles: issuance policy kept in the database, turned into a frozen policy to apply."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from pki.profiles import ProfilePolicy


class Profile(models.Model):
    """A named issuance policy: validity cap, key types, KU/EKU, allowed names, approval."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    validity_days = models.PositiveIntegerField(help_text="maximum validity (the cap)")
    default_validity_days = models.PositiveIntegerField()
    key_types = models.JSONField(
        default=list, help_text='allowed key algorithms, e.g. ["rsa", "ec-p256", "ed25519"]'
    )
    min_rsa_bits = models.PositiveIntegerField(default=2048)
    key_usage = models.JSONField(default=list, help_text='e.g. ["digital_signature"]')
    extended_key_usage = models.JSONField(default=list, help_text='e.g. ["serverAuth"]')
    allowed_names = models.JSONField(
        default=list, help_text='patterns like "dns:*.example.test", "ip:10.0.0.0/8", "email:*@x.test"'
    )
    require_san = models.BooleanField(default=False)
    requires_approval = models.BooleanField(default=False)
    approvals_required = models.PositiveSmallIntegerField(
        default=1,
        db_default=1,
        help_text="approvals by distinct reviewers a request needs when the profile requires approval",
    )
    is_ca = models.BooleanField(default=False)
    path_length = models.PositiveIntegerField(null=True, blank=True)
    ocsp_no_check = models.BooleanField(default=False)
    escrow = models.BooleanField(
        default=False, help_text="keep server-generated keys after their one download (key escrow)"
    )
    auto_renew = models.BooleanField(
        default=False,
        db_default=False,
        help_text="certificates requested under this profile renew themselves unless the request says no",
    )
    renew_before_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="auto-renewal this many days before notAfter (none: KMI_AUTO_RENEW_DAYS)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def policy(self) -> ProfilePolicy:
        """Return the frozen policy this row describes."""
        from pki.conf import pki_settings
        from pki.profiles import ProfilePolicy

        # Cached on the instance: a saved change comes with a new updated_at; the names
        # "$KMI_ALLOWED_DOMAINS" stands for come from the settings.
        stamp = (self.updated_at, pki_settings().allowed_domains)
        cached: tuple[object, ProfilePolicy] | None = getattr(self, "_policy_cache", None)
        if cached is None or cached[0] != stamp:
            cached = (stamp, ProfilePolicy.from_profile(self))
            self._policy_cache = cached
        return cached[1]
