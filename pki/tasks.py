"""Celery adapters: take ids, load, call a use case; safe to run twice; no secrets in arguments.

``BEAT_SCHEDULE`` is the one beat schedule of KMI (installed by ``web.celery``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from pki.audit import verify_chain

log = logging.getLogger(__name__)


@shared_task(name="pki.verify_audit_chain")
def verify_audit_chain() -> dict[str, Any]:
    """Verify every audit chain and log the first broken link of each."""
    report = verify_chain()
    for brk in report.breaks:
        log.error("audit chain %s broken at seq %s: %s", brk.stream, brk.seq, brk.problem)
    return {"streams": report.streams, "events": report.events, "ok": report.ok}


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
    "acme-purge-nonces": {"task": "pki.acme_purge_nonces", "schedule": 3600.0},
}
