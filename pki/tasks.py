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


BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "verify-audit-chain": {"task": "pki.verify_audit_chain", "schedule": 3600.0},
}
