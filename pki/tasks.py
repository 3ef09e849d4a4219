"""Celery adapters: take ids, load, call a use case; safe to run twice; no secrets in arguments.

``BEAT_SCHEDULE`` is the one beat schedule of KMI (installed by ``web.celery``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.dispatch import receiver

from pki.audit import verify_chain
from pki.signals import certificate_issued, certificate_status_changed

log = logging.getLogger(__name__)


@shared_task(name="pki.verify_audit_chain")
def verify_audit_chain() -> dict[str, Any]:
    """Verify every audit chain and log the first broken link of each."""
    report = verify_chain()
    for brk in report.breaks:
        log.error("audit chain %s broken at seq %s: %s", brk.stream, brk.seq, brk.problem)
    return {"streams": report.streams, "events": report.events, "ok": report.ok}


# --- OCSP ----------------------------------------------------------------------------------------


@shared_task(name="pki.ocsp_presign")
def ocsp_presign(certificate_ids: list[int]) -> int:
    """Re-sign the OCSP responses of these certificates now (after issuance or a status change)."""
    from pki.models import Certificate, CertificateAuthority
    from pki.ocsp import presign_responses

    done = 0
    ca_ids = set(
        Certificate.objects.filter(pk__in=certificate_ids, ca__isnull=False).values_list("ca_id", flat=True)
    )
    for ca in CertificateAuthority.objects.filter(pk__in=ca_ids, certificate__isnull=False):
        done += presign_responses(ca=ca, actor="celery:ocsp", certificate_ids=certificate_ids)
    return done


@shared_task(name="pki.ocsp_refresh")
def ocsp_refresh() -> dict[str, int]:
    """Renew OCSP responders that need it and re-sign responses past half their validity."""
    from pki.ocsp import refresh_responses

    return refresh_responses(actor="celery:ocsp")


@receiver(certificate_status_changed, dispatch_uid="pki.tasks.ocsp_on_status_changed")
def _ocsp_on_status_changed(certificate_ids: list[int], **_: object) -> None:
    # Sent after commit: "a revocation shows in OCSP within seconds".
    _enqueue_presign(list(certificate_ids))


@receiver(certificate_issued, dispatch_uid="pki.tasks.ocsp_on_issued")
def _ocsp_on_issued(certificate_id: int, **_: object) -> None:
    _enqueue_presign([certificate_id])


def _enqueue_presign(certificate_ids: list[int]) -> None:
    try:
        ocsp_presign.delay(certificate_ids)
    except Exception:  # the change is committed; a broker outage must not fail its caller
        # pki.ocsp_refresh re-signs every response whose status no longer matches within a minute.
        log.exception("OCSP: cannot enqueue re-signing of certificates %s", certificate_ids)


BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "verify-audit-chain": {"task": "pki.verify_audit_chain", "schedule": 3600.0},
    # Cheap when nothing is stale; responses are re-signed at half their validity (default 30 min).
    "ocsp-refresh": {"task": "pki.ocsp_refresh", "schedule": 60.0},
}
