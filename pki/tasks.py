"""Celery adapters: take ids, load, call a use case; safe to run twice; no secrets in arguments.

``BEAT_SCHEDULE`` is the one beat schedule of KMI (installed by ``web.celery``).
"""

from __future__ import annotations

import logging
import time
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


@shared_task(name="pki.ocsp_presign_issued")
def ocsp_presign_issued(ca_id: int, from_certificate_id: int) -> int:
    """Pre-sign the OCSP responses of certificates the CA issued since ``from_certificate_id``."""
    from pki.models import CertificateAuthority
    from pki.ocsp import presign_responses

    ca = CertificateAuthority.objects.filter(pk=ca_id, certificate__isnull=False).first()
    if ca is None:
        return 0
    return presign_responses(ca=ca, actor="celery:ocsp", from_certificate_id=from_certificate_id)


# CA id -> until when (time.monotonic) an already queued ocsp_presign_issued covers new certificates.
_ISSUED_COVERED: dict[int, float] = {}


@receiver(certificate_issued, dispatch_uid="pki.tasks.ocsp_on_issued")
def _ocsp_on_issued(certificate_id: int, ca_id: int, **_: object) -> None:
    # One message per CA per KMI_OCSP_PRESIGN_DELAY_SECONDS, not one per certificate: publishing a
    # Celery message costs about a millisecond, as much as issuing the certificate itself.
    from pki.conf import ocsp_settings

    delay = ocsp_settings().presign_delay_seconds
    if delay <= 0:
        _enqueue_presign([certificate_id])
        return
    now = time.monotonic()
    if _ISSUED_COVERED.get(ca_id, 0.0) > now:
        return  # the queued task runs later and signs every certificate from its id on
    _ISSUED_COVERED[ca_id] = now + delay
    try:
        ocsp_presign_issued.apply_async((ca_id, certificate_id), countdown=delay)
    except Exception:  # the certificate is committed; the beat job pre-signs it within a minute
        _ISSUED_COVERED.pop(ca_id, None)
        log.exception("OCSP: cannot enqueue pre-signing of certificate %s", certificate_id)


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
