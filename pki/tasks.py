"""Celery adapters: take ids, load, call a use case; safe to run twice; no secrets in arguments.

``BEAT_SCHEDULE`` is the one beat schedule of KMI (installed by ``web.celery``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.dispatch import receiver

from pki.audit import verify_chain
from pki.conf import pki_settings
from pki.signals import certificate_status_changed

log = logging.getLogger(__name__)


@shared_task(name="pki.verify_audit_chain")
def verify_audit_chain() -> dict[str, Any]:
    """Verify every audit chain and log the first broken link of each."""
    report = verify_chain()
    for brk in report.breaks:
        log.error("audit chain %s broken at seq %s: %s", brk.stream, brk.seq, brk.problem)
    return {"streams": report.streams, "events": report.events, "ok": report.ok}


@shared_task(name="pki.publish_due_crls")
def publish_due_crls() -> dict[str, Any]:
    """Publish every CRL that is missing, past half-life or stale after a status change."""
    from pki.crl import publish_due_crls as publish

    crls = publish(actor="system:celery")
    return {"published": [[crl.ca_id, crl.shard, crl.crl_number] for crl in crls]}


@receiver(certificate_status_changed, dispatch_uid="pki.tasks.crl_stale_on_status_change")
def crl_stale_on_status_change(*, certificate_ids: list[int], **_: Any) -> None:
    """Mark the affected CRLs stale (an insert, no signing); ``publish_due_crls`` picks them up."""
    from django.db import DatabaseError

    from pki.crl import mark_stale

    try:
        mark_stale(certificate_ids=certificate_ids)
    except DatabaseError:  # the change itself is committed; the half-life run still covers it
        log.exception("could not mark CRLs stale for certificates %s", certificate_ids)


def _crl_check_interval() -> float:
    # Half the configured delay between a revocation and its CRL: the mark waits at most one
    # interval, and the publication itself takes at most seconds.
    return max(1.0, pki_settings().crl_revocation_delay_seconds / 2)


@shared_task(name="pki.acme_validate_challenge")
def acme_validate_challenge(challenge_id: int) -> str:
    """Validate one ACME challenge that a client marked ready (idempotent)."""
    from pki.acme.orders import validate_challenge

    return str(validate_challenge(challenge_id=challenge_id, actor="acme:validator").status)


@shared_task(name="pki.acme_purge_nonces")
def acme_purge_nonces() -> int:
    """Delete expired ACME nonces from the database store."""
    from pki.acme.nonces import purge_expired_nonces

    return purge_expired_nonces()


BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "verify-audit-chain": {"task": "pki.verify_audit_chain", "schedule": 3600.0},
    "publish-due-crls": {"task": "pki.publish_due_crls", "schedule": _crl_check_interval()},
    "acme-purge-nonces": {"task": "pki.acme_purge_nonces", "schedule": 3600.0},
}
