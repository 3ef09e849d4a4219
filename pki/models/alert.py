"""Threat signals: alerts the monitor raised, one row per episode, with their delivery state.

An episode is one stretch of one condition about one subject: while an alert of that kind and
subject is open or acknowledged, a new detection only refreshes it (``last_seen``, ``count``);
after it is resolved, the next detection opens a new episode. A partial unique constraint
makes that a database fact, and each episode is delivered (webhook, e-mail) at most once.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AlertKind(models.TextChoices):
    """What the monitor noticed."""

    ISSUANCE_SPIKE = "issuance_spike", "Issuance far above its baseline"
    NEW_DOMAIN = "new_domain", "A registrable domain never issued under this profile"
    BLOCKED_KEY = "blocked_key", "Attempts to certify a blocked key"
    CHALLENGE_FAILURES = "challenge_failures", "ACME challenges failing in a burst"
    TOKEN_ERRORS = "token_errors", "An API token hitting many 4xx"
    LOGIN_FAILURES = "login_failures", "Failed console logins in a burst"
    AUDIT_CHAIN = "audit_chain", "Audit chain broken"
    CRL_STALE = "crl_stale", "CRL past its nextUpdate"
    OCSP_STALE = "ocsp_stale", "OCSP responses stale"
    SIGNER_DOWN = "signer_down", "Signer unreachable"
    KEY_BACKEND = "key_backend", "CA key backend unreachable"
    CA_EXPIRY = "ca_expiry", "CA certificate close to expiry"


class AlertState(models.TextChoices):
    """Open (new), acknowledged (someone is on it), resolved (the episode is over)."""

    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AlertSeverity(models.TextChoices):
    """How urgent: warnings can wait for office hours, critical ones cannot."""

    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Alert(models.Model):
    """One episode of one condition about one subject."""

    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    subject = models.CharField(max_length=255, help_text="what it is about, e.g. ca:issuing")
    episode = models.CharField(
        max_length=64, unique=True, help_text="kind, subject and first sighting, hashed"
    )
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(default=1, help_text="monitor runs that saw it")
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Delivery: claimed once (notified_at set before sending), so an episode is never sent twice.
    notified_at = models.DateTimeField(null=True, blank=True)
    delivery_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=~Q(state="resolved"),
                name="pki_alert_one_live_episode",
            )
        ]
        indexes = [models.Index(fields=["state", "kind"], name="pki_alert_state_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} ({self.state})"


class MonitorRun(models.Model):
    """When the monitor last looked: the next run's "new since" windows start here."""

    started_at = models.DateTimeField()
    window_end = models.DateTimeField(help_text="events up to here were examined")
    raised = models.PositiveIntegerField(default=0)
    refreshed = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"monitor run up to {self.window_end:%Y-%m-%d %H:%M:%S}"
