"""Celery adapters: take ids, load, call a use case; safe to run twice; no secrets in arguments.

``BEAT_SCHEDULE`` is the one beat schedule of KMI (installed by ``web.celery``). Tasks named
``pki.signing.*`` use a CA key and are routed to the ``signing`` queue (``CELERY_TASK_ROUTES``),
which only the signing workers — the processes that hold the KEK — consume.

Every task acknowledges late and is rejected back onto its queue when the worker running it
dies (``acks_late`` + ``reject_on_worker_lost``): each one is idempotent, so running it again
after a crash finishes the work without doing any of it twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import current_app, shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import transaction
from django.dispatch import receiver

from pki import lifecycle
from pki.conf import lifecycle_settings, pki_settings
from pki.health import HEARTBEAT_SECONDS
from pki.signals import (
    acme_challenge_ready,
    acme_order_processing,
    certificate_issued,
    certificate_status_changed,
    checkpoint_made,
    notices_planned,
    ocsp_response_missing,
)

log = logging.getLogger(__name__)


@worker_ready.connect(dispatch_uid="pki.tasks.check_key_backends")
def _check_key_backends(sender: Any = None, **_: Any) -> None:
    """At worker start-up, log every CA whose key backend this worker cannot reach (if it signs)."""
    from django.db import DatabaseError

    from pki.keys.health import log_unreachable_backends

    queues = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", None) or []}
    if lifecycle_settings().signs_on_worker and "signing" not in queues:
        return  # with KMI_SIGNING=worker only the workers of the `signing` queue hold keys
    try:
        log_unreachable_backends()
    except DatabaseError:
        log.exception("cannot check the CAs' key backends: the database is unavailable")


@shared_task(name="pki.verify_audit_chain")
def verify_audit_chain() -> dict[str, Any]:
    """Verify every audit chain, keep the result (the console shows it) and log broken links."""
    from pki.health import verify_audit

    report = verify_audit(actor="system:celery")
    for brk in report.breaks:
        log.error("audit chain %s broken at seq %s: %s", brk["stream"], brk["seq"], brk["problem"])
    return {"streams": report.streams, "events": report.events, "ok": report.ok}


@shared_task(name="pki.signing.audit_checkpoint")
def audit_checkpoint() -> dict[str, Any]:
    """Sign, store and export an audit checkpoint (on a signing worker: it holds the audit key)."""
    from pki.audit_checkpoints import make_checkpoint

    row = make_checkpoint(actor="system:celery")
    return {"number": row.number, "events": row.events}


@shared_task(name="pki.refresh_certificate_summaries")
def refresh_certificate_summaries() -> int:
    """Recount each CA's certificate figures for the console's dashboard."""
    from pki import health

    return health.refresh_summaries()


@shared_task(name="pki.heartbeat")
def heartbeat() -> str:
    """Note that a worker of the default queue is alive (the dashboard's worker health)."""
    from pki import health

    return str(health.beat(queue="celery").seen_at)


@shared_task(name="pki.signing.heartbeat")
def signing_heartbeat() -> str:
    """Note that a signing worker is alive (the dashboard's signer health)."""
    from pki import health

    return str(health.beat(queue="signing").seen_at)


@shared_task(name="pki.publish_due_crls")
def publish_due_crls() -> dict[str, Any]:
    """Publish every CRL that is missing, past half-life or stale after a status change."""
    from pki.crl import publish_due_crls as publish

    crls = publish(actor="system:celery")
    return {"published": [[crl.ca_id, crl.shard, crl.crl_number] for crl in crls]}


def _crl_check_interval() -> float:
    # Half the configured delay between a revocation and its CRL: the mark waits at most one
    # interval, and the publication itself takes at most seconds.
    return max(1.0, pki_settings().crl_revocation_delay_seconds / 2)


@shared_task(name="pki.signing.run", acks_late=True, reject_on_worker_lost=True)
def signing_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run the signing job a message names (``job`` id and ``mac`` only) for ``pki.signing.run_signing``;
    anything else is refused, logged and audited (``pki.signing_channel.handle_message``)."""
    from pki.signing import execute
    from pki.signing_channel import handle_message

    return handle_message(args, kwargs, execute=execute)


@shared_task(name="pki.purge_signing_jobs")
def purge_signing_jobs() -> int:
    """Delete signing jobs past their retention (they need no key: any worker runs this)."""
    from pki.signing_channel import purge_signing_jobs as purge

    return purge()


@shared_task(name="pki.lifecycle.expiry_scan", acks_late=True, reject_on_worker_lost=True)
def expiry_scan() -> dict[str, int]:
    """Notify owners of certificates and CAs nearing expiry (each notice at most once)."""
    return lifecycle.expiry_scan()


@shared_task(name="pki.lifecycle.deliver_notices", acks_late=True, reject_on_worker_lost=True)
def deliver_notices() -> dict[str, int]:
    """Send the notices due now (a renewed certificate's delivery, an alert) without waiting for
    the next expiry scan."""
    report = lifecycle.deliver_notices()
    return {"sent": len(report.sent), "failed": len(report.failed), "abandoned": len(report.abandoned)}


@receiver(notices_planned, dispatch_uid="pki.tasks.deliver_on_notices_planned")
def _deliver_on_notices_planned(**_: object) -> None:
    try:
        deliver_notices.delay()
    except Exception:  # the notices are stored; the hourly expiry scan delivers them anyway
        log.exception("cannot enqueue the delivery of new notices")


@shared_task(name="pki.signing.auto_renew", acks_late=True, reject_on_worker_lost=True)
def auto_renew() -> dict[str, list[int]]:
    """Renew the auto-renew certificates whose keys KMI holds."""
    return {"renewed": lifecycle.auto_renew_certificates()}


@shared_task(name="pki.signing.reconcile_requests", acks_late=True, reject_on_worker_lost=True)
def reconcile_requests() -> dict[str, list[int]]:
    """Issue or give up approved requests nobody issued (on the signing queue: it signs)."""
    return lifecycle.reconcile_approved_requests()


@shared_task(name="pki.lifecycle.deactivate_expired_keys", acks_late=True, reject_on_worker_lost=True)
def deactivate_expired_keys() -> dict[str, list[str]]:
    """Deactivate keys whose certificates have all expired."""
    return {"deactivated": lifecycle.deactivate_expired_keys()}


@shared_task(name="pki.lifecycle.destroy_keys_past_retention", acks_late=True, reject_on_worker_lost=True)
def destroy_keys_past_retention() -> dict[str, list[str]]:
    """Crypto-shred keys past their retention period."""
    return {"destroyed": lifecycle.destroy_keys_past_retention()}


@shared_task(name="pki.lifecycle.ca_generations", acks_late=True, reject_on_worker_lost=True)
def ca_generations() -> dict[str, list[tuple[str, int]]]:
    """Move issuance to CA generations whose rollover time has come; retire idle old generations."""
    from pki.rotation import update_generations

    return update_generations(actor=lifecycle.ACTOR)


@shared_task(name="pki.signing.renew_service_certificates", acks_late=True, reject_on_worker_lost=True)
def renew_service_certificates() -> dict[str, list[str]]:
    """Keep KMI's own TLS certificate (``KMI_SERVICE_CERT_*``) current on disk."""
    return {"issued": lifecycle.renew_service_certificates()}


def enqueue(task_name: str, *, robust: bool = True, **kwargs: Any) -> None:
    """Send ``task_name`` once the current transaction commits (at once outside a transaction).

    ``kwargs`` are ids only. With ``robust`` a send that fails (broker down) is logged, not
    raised: every job is a scan that the next beat tick repeats, so the work is not lost.
    """

    def send() -> None:
        current_app.send_task(task_name, kwargs=kwargs)

    transaction.on_commit(send, robust=robust)


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


@receiver(ocsp_response_missing, dispatch_uid="pki.tasks.ocsp_on_response_missing")
def _ocsp_on_response_missing(certificate_ids: list[int], **_: object) -> None:
    # A web process that cannot sign answered tryLater; the signing queue pre-signs it now.
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


# --- ACME --------------------------------------------------------------------------------------


@shared_task(name="pki.acme_validate_challenge")
def acme_validate_challenge(challenge_id: int) -> str:
    """Validate one ACME challenge that a client marked ready (idempotent)."""
    from pki.acme.authorizations import validate_challenge

    return str(validate_challenge(challenge_id=challenge_id, actor="acme:validator").status)


@receiver(acme_challenge_ready, dispatch_uid="pki.tasks.acme_validate_on_ready")
def _acme_validate_on_ready(challenge_id: int, **_: object) -> None:
    # Sent after commit: the challenge is processing and the client polls it.
    acme_validate_challenge.delay(challenge_id)


@shared_task(name="pki.signing.acme_finalize", acks_late=True, reject_on_worker_lost=True)
def acme_finalize(order_id: int, actor: str = "") -> str:
    """Issue a ``processing`` ACME order on a signing worker (KMI_SIGNING=worker); idempotent.

    Only an order that finalize turned ``processing`` (a checked path) is issued, and the actor
    recorded is its account as the database knows it: ``actor`` (sent by older web processes) is
    ignored, so a forged message can neither pick an order's state nor name someone else.
    """
    from pki.acme.finalize import complete_finalization, order_actor
    from pki.models import AcmeOrder

    order = AcmeOrder.objects.select_related("account__endpoint").filter(pk=order_id).first()
    if order is None:
        log.warning("ACME finalize: no order %s; nothing issued", order_id)
        return "unknown"
    return str(complete_finalization(order_id=order_id, actor=order_actor(order)).status)


@receiver(acme_order_processing, dispatch_uid="pki.tasks.acme_finalize_on_processing")
def _acme_finalize_on_processing(order_id: int, **_: object) -> None:
    # Sent after commit; if the broker is down, acme_finalize_pending on the beat schedule sends it.
    # The order's id only: the signer names the order's account as the actor (acme_finalize).
    enqueue("pki.signing.acme_finalize", order_id=order_id)


@shared_task(name="pki.signing.acme_finalize_pending", acks_late=True, reject_on_worker_lost=True)
def acme_finalize_pending() -> int:
    """Issue ``processing`` orders whose hand-over message was lost."""
    from pki.acme.finalize import finalize_pending_orders

    return finalize_pending_orders(actor="acme:signer")


@shared_task(name="pki.acme_purge_nonces")
def acme_purge_nonces() -> int:
    """Delete expired ACME nonces from the database store."""
    from pki.acme.nonces import purge_expired_nonces

    return purge_expired_nonces()


@shared_task(name="pki.signing.transparency_tick")
def transparency_tick() -> dict[str, int]:
    """Sequence queued certificates into the transparency logs; sign a tree head where one grew.

    Runs every few seconds, so a certificate is under a signed tree head well within the log's
    maximum merge delay (60 s) even after a crash: its leaf was queued in its own transaction.
    """
    from pki.transparency.log import tick

    return tick(actor="system:celery")


@shared_task(name="pki.signing.anchor_checkpoint", acks_late=True, reject_on_worker_lost=True)
def anchor_checkpoint(checkpoint_id: int) -> int:
    """Anchor a signed audit checkpoint in the sibling transparency log ``kmi-audit``."""
    from pki.transparency.anchoring import anchor_checkpoint as anchor

    return int(anchor(checkpoint_id=checkpoint_id, actor="system:celery").leaf_index)


@receiver(checkpoint_made, dispatch_uid="pki.tasks.anchor_on_checkpoint")
def _anchor_on_checkpoint(checkpoint_id: int, **_: object) -> None:
    # Sent after commit; the next checkpoint's run anchors nothing twice (the task is idempotent).
    enqueue("pki.signing.anchor_checkpoint", checkpoint_id=checkpoint_id)


@shared_task(name="pki.threat_monitor")
def threat_monitor() -> dict[str, int]:
    """Run the threat monitor once: raise, refresh and resolve alerts; deliver new episodes."""
    from pki.transparency.monitor import run_monitor

    report = run_monitor()
    return {
        "raised": len(report.raised),
        "refreshed": len(report.refreshed),
        "resolved": len(report.resolved),
    }


def _every(seconds: float) -> dict[str, Any]:
    # A tick nobody ran before the next one is dropped, not stacked up behind a dead worker.
    return {"schedule": seconds, "options": {"expires": seconds}}


_SCAN = float(lifecycle_settings().scan_seconds)
_SIX_HOURS = 6 * 3600.0

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "verify-audit-chain": {"task": "pki.verify_audit_chain", "schedule": 3600.0},
    "audit-checkpoint": {
        "task": "pki.signing.audit_checkpoint",
        **_every(float(getattr(settings, "KMI_AUDIT_CHECKPOINT_SECONDS", 300))),
    },
    # Signs with the log key: on the signing queue like every other use of a KMI key.
    "transparency-tick": {"task": "pki.signing.transparency_tick", **_every(10.0)},
    "threat-monitor": {"task": "pki.threat_monitor", **_every(60.0)},
    "console-summaries": {
        "task": "pki.refresh_certificate_summaries",
        **_every(float(lifecycle_settings().summary_seconds)),
    },
    "console-heartbeat": {"task": "pki.heartbeat", **_every(HEARTBEAT_SECONDS)},
    "console-signing-heartbeat": {"task": "pki.signing.heartbeat", **_every(HEARTBEAT_SECONDS)},
    "publish-due-crls": {"task": "pki.publish_due_crls", **_every(_crl_check_interval())},
    # Cheap when nothing is stale; responses are re-signed at half their validity (default 30 min).
    "ocsp-refresh": {"task": "pki.ocsp_refresh", **_every(60.0)},
    "acme-purge-nonces": {"task": "pki.acme_purge_nonces", **_every(3600.0)},
    "purge-signing-jobs": {"task": "pki.purge_signing_jobs", **_every(_SIX_HOURS)},
    "acme-finalize-pending": {"task": "pki.signing.acme_finalize_pending", **_every(60.0)},
    "lifecycle-expiry-scan": {"task": "pki.lifecycle.expiry_scan", **_every(_SCAN)},
    "lifecycle-auto-renew": {"task": "pki.signing.auto_renew", **_every(_SCAN)},
    "reconcile-approved-requests": {"task": "pki.signing.reconcile_requests", **_every(60.0)},
    "lifecycle-deactivate-expired-keys": {
        "task": "pki.lifecycle.deactivate_expired_keys",
        **_every(_SIX_HOURS),
    },
    "lifecycle-destroy-keys-past-retention": {
        "task": "pki.lifecycle.destroy_keys_past_retention",
        **_every(_SIX_HOURS),
    },
    # A rollover set for a later time takes over within a minute of it.
    "lifecycle-ca-generations": {"task": "pki.lifecycle.ca_generations", **_every(60.0)},
    "lifecycle-renew-service-certificates": {
        "task": "pki.signing.renew_service_certificates",
        **_every(_SIX_HOURS),
    },
}
