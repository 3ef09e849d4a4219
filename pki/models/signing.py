"""Signing jobs: the work a checked use case on the web side decided, for a signing worker to do.

With ``KMI_SIGNING=worker`` the broker carries only a job's id and a MAC over the job
(``pki.signing``); the worker re-reads the row, re-checks it and records the actor the row
names. A message that names no committed job, or whose MAC does not verify, is refused.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class SigningJobState(models.TextChoices):
    """Where a signing job is: waiting, finished, failed with a domain error, or refused."""

    PENDING = "pending", "pending"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    REFUSED = "refused", "refused"


class SigningJob(models.Model):
    """One signing use case with its public parameters and the user who asked, committed by web.

    ``user`` is the acting user as the database knows it (deleting the user deletes their
    pending jobs, so a job never outlives the authority it was decided under); ``actor`` is the
    audit label the deciding use case used. ``result`` holds the use case's outcome (never key
    material: a hand-over's sealed key goes back to its caller only).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    use_case = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    # SHA-256 of the canonical JSON of ``params`` as committed (the MAC covers it); a one-time
    # secret in ``params`` is erased once the job has run, the digest stays.
    params_sha256 = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="signing_jobs"
    )
    actor = models.CharField(max_length=150)
    state = models.CharField(max_length=16, choices=SigningJobState.choices, default=SigningJobState.PENDING)
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "created_at"], name="pki_signingjob_state_idx")]

    def __str__(self) -> str:
        return f"signing job {self.pk} ({self.use_case}, {self.state})"
