"""Lifecycle use cases run on a schedule: expiry notices, auto-renewal, key deactivation and destruction.

Every function here is safe to run twice and safe when two workers run it at once: work items are
claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and re-checked under the lock, and notices are
unique rows claimed before they are sent (see ``pki.models.notification``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import (
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Coalesce

from pki import audit, exceptions
from pki.authorities import disable_cas_holding
from pki.clock import resolve
from pki.conf import lifecycle_settings
from pki.enrollment import sign_csr
from pki.exceptions import InvalidState, NotFound, NotificationFailed, PKIError
from pki.issuance import fail_request, renew_certificate
from pki.keystore import generate_key
from pki.models.authority import CAState, CertificateAuthority
from pki.models.blocklist import BlockedKey
from pki.models.certificate import Certificate
from pki.models.key import Key, KeyPurpose, KeyState
from pki.models.notification import (
    NotificationChannel,
    NotificationKind,
    NotificationRecord,
    NotificationState,
)
from pki.models.profile import Profile
from pki.models.request import RequestState
from pki.notifications import send_email, send_webhook
from pki.renewal import needs_approval, submit_renewal
from pki.signals import notices_planned, notification_sent
from pki.signing import signing_in_place

log = logging.getLogger(__name__)

ACTOR = "system:lifecycle"
DAY = dt.timedelta(days=1)


# --- expiry notices ------------------------------------------------------------------------------
def idempotency_key(kind: str, fingerprint: str, threshold_days: int, channel: str) -> str:
    """Return the stable key of one notice (the same on every worker and every retry)."""
    return hashlib.sha256(f"{kind}|{fingerprint}|{threshold_days}|{channel}".encode()).hexdigest()


def due_threshold(not_after: dt.datetime, thresholds: Iterable[int], now: dt.datetime) -> int | None:
    """Return the smallest threshold (days) that ``not_after`` is inside of at ``now``, if any.

    Only the most urgent one is due: a certificate first seen 10 days before expiry gets the
    14-day notice once, not the 30- and 14-day notices together.
    """
    remaining = not_after - now
    inside = [t for t in thresholds if remaining <= t * DAY]
    return min(inside) if inside else None


def _has_live_successor() -> Exists:
    return Exists(Certificate.objects.filter(renewed_from=OuterRef("pk"), revoked_at__isnull=True))


def _renews_itself(cert: Certificate) -> bool:
    """True when the auto-renewal job will replace ``cert`` (so its owner need not act): it is
    set to auto-renew, and its key is the client's or one KMI holds that is still active."""
    return bool(cert.auto_renew and (cert.key is None or cert.key.state == KeyState.ACTIVE))


def _channels(email: Iterable[str], webhook: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    emails = sorted({e for e in email if e})
    if emails:
        out.append((NotificationChannel.EMAIL, "\n".join(emails)))
    if webhook:
        out.append((NotificationChannel.WEBHOOK, webhook))
    return out


def _plan_rows(
    cert: Certificate,
    kind: str,
    threshold: int,
    channels: list[tuple[str, str]],
    now: dt.datetime,
    *,
    payload: Mapping[str, object] | None = None,
) -> list[NotificationRecord]:
    return [
        NotificationRecord(
            idempotency_key=idempotency_key(kind, cert.fingerprint_sha256, threshold, channel),
            kind=kind,
            certificate=cert,
            threshold_days=threshold,
            channel=channel,
            recipient=recipient,
            payload=dict(payload or {}),
            created_at=now,
        )
        for channel, recipient in channels
    ]


def _plan_now(rows: list[NotificationRecord]) -> int:
    """Record notices to go out at once (delivery is enqueued when the transaction commits)."""
    NotificationRecord.objects.bulk_create(rows, ignore_conflicts=True)
    if rows:
        transaction.on_commit(lambda: notices_planned.send(sender=NotificationRecord), robust=True)
    return len(rows)


def plan_alert(
    *,
    ca: CertificateAuthority,
    event: str,
    subject: str,
    body: str,
    details: Mapping[str, object],
    now: dt.datetime,
) -> int:
    """An alert about a CA to its contacts and the ``KMI_ALERT_*`` recipients, sent at once."""
    conf = lifecycle_settings()
    cert = ca.certificate
    if cert is None:
        return 0
    channels = _channels([ca.owner_email, *conf.alert_emails], ca.owner_webhook_url or conf.alert_webhook_url)
    if not channels:
        log.error("CA %s: %s, and no owner e-mail/webhook or KMI_ALERT_* is set: nobody told", ca.name, event)
    payload = {
        "event": event,
        "subject": subject,
        "body": body,
        "details": dict(details),
        "authority": ca.name,
    }
    return _plan_now(_plan_rows(cert, NotificationKind.CA_COMPROMISE, 0, channels, now, payload=payload))


def plan_renewal_notice(*, certificate: Certificate, renewed_from: Certificate, now: dt.datetime) -> int:
    """Deliver a renewed certificate to its owner: a signed webhook carrying the PEM chain, and an
    e-mail saying where to fetch it (``GET /api/v1/certificates/<id>/successor/``)."""
    payload = {
        "event": "certificate.renewed",
        "subject": f"[KMI] certificate {certificate.subject or certificate.serial} was renewed",
        "renewed_from": renewed_from.serial,
        "renewed_from_id": renewed_from.pk,
    }
    channels = notice_channels(certificate)
    return _plan_now(
        _plan_rows(certificate, NotificationKind.CERTIFICATE_RENEWED, 0, channels, now, payload=payload)
    )


def _acme_contacts(cert: Certificate) -> list[str]:
    try:
        order = cert.acme_order
    except ObjectDoesNotExist:
        return []
    contacts = order.account.contact or []
    return [str(c).removeprefix("mailto:") for c in contacts if str(c).startswith("mailto:")]


def notice_channels(cert: Certificate) -> list[tuple[str, str]]:
    """Where notices about ``cert`` go: its owner's e-mail and webhook (set at enrollment); else
    the e-mail of the user who requested it; else, for an ACME certificate, the account's
    contacts; only when none of these names anyone, the issuing CA's contacts."""
    emails = [cert.owner_email] if cert.owner_email else []
    if not emails and cert.owner is not None and cert.owner.email:
        emails = [cert.owner.email]
    if not emails:
        emails = _acme_contacts(cert)
    webhook = cert.owner_webhook_url
    if not emails and not webhook and cert.ca is not None:
        emails, webhook = [cert.ca.owner_email], cert.ca.owner_webhook_url
    return _channels(emails, webhook)


def plan_expiry_notices(*, now: dt.datetime | None = None) -> int:
    """Record the notices now due for certificates and CA certificates; return how many are due.

    Quiet about certificates that renew themselves (``auto_renew`` with a key KMI holds) until
    the last threshold, when a missing successor means the renewal failed; quiet about
    certificates that already have an unrevoked successor.
    """
    now = resolve(now)
    conf = lifecycle_settings()
    rows: list[NotificationRecord] = []
    if conf.expiry_thresholds:
        last = min(conf.expiry_thresholds)
        horizon = now + max(conf.expiry_thresholds) * DAY
        candidates = (
            Certificate.objects.expiring(before=horizon, now=now)
            .filter(is_ca=False)
            .exclude(_has_live_successor())
            # KMI's own OCSP responder certificates renew themselves at half-life: nobody to tell.
            .exclude(key__purpose=KeyPurpose.OCSP)
            .select_related("ca", "key", "owner", "acme_order__account")
        )
        for cert in candidates.iterator(chunk_size=500):
            threshold = due_threshold(cert.not_after, conf.expiry_thresholds, now)
            if threshold is None or (_renews_itself(cert) and threshold != last):
                continue
            rows += _plan_rows(
                cert, NotificationKind.CERTIFICATE_EXPIRY, threshold, notice_channels(cert), now
            )
    if conf.ca_expiry_thresholds:
        horizon = now + max(conf.ca_expiry_thresholds) * DAY
        authorities = CertificateAuthority.objects.exclude(state=CAState.DISABLED).select_related(
            "certificate"
        )
        for ca in authorities:
            ca_cert = ca.certificate
            if ca_cert is None or ca_cert.revoked_at is not None or not now < ca_cert.not_after <= horizon:
                continue
            threshold = due_threshold(ca_cert.not_after, conf.ca_expiry_thresholds, now)
            if threshold is None:
                continue
            log.warning("CA %s expires at %s (inside %d days)", ca.name, ca_cert.not_after, threshold)
            channels = _channels(
                [ca.owner_email, *conf.alert_emails], ca.owner_webhook_url or conf.alert_webhook_url
            )
            if not channels:
                log.warning("CA %s: no owner e-mail/webhook and no KMI_ALERT_* set; nobody told", ca.name)
            rows += _plan_rows(ca_cert, NotificationKind.CA_EXPIRY, threshold, channels, now)
    # ON CONFLICT DO NOTHING: a notice planned before (by this or another worker) stays one row.
    NotificationRecord.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _claimable(now: dt.datetime) -> QuerySet[NotificationRecord]:
    lease = dt.timedelta(seconds=lifecycle_settings().notify_claim_lease_seconds)
    return NotificationRecord.objects.filter(
        Q(state=NotificationState.PENDING)
        | Q(state=NotificationState.FAILED, next_attempt_at__lte=now)
        # A claim older than the lease belongs to a worker that died; the receiver drops the
        # rare repeat by its X-KMI-Delivery key.
        | Q(state=NotificationState.CLAIMED, claimed_at__lte=now - lease)
    )


def _claim_next(now: dt.datetime) -> NotificationRecord | None:
    with transaction.atomic():
        record = (
            _claimable(now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("id")
            .select_related("certificate", "certificate__ca")
            .first()
        )
        if record is None:
            return None
        record.state = NotificationState.CLAIMED
        record.claimed_at = now
        record.attempts += 1
        record.save(update_fields=["state", "claimed_at", "attempts"])
    return record


def _cert_summary(cert: Certificate) -> dict[str, object]:
    return {
        "serial": cert.serial,
        "subject": cert.subject,
        "sans": [line for line in cert.san_text.splitlines() if line],
        "ca": cert.ca.name if cert.ca is not None else None,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "fingerprint_sha256": cert.fingerprint_sha256,
        "auto_renew": cert.auto_renew,
    }


def _send_event(record: NotificationRecord, now: dt.datetime) -> None:
    """A notice whose words are in its payload: a renewed certificate's delivery, an alert."""
    from pki.conf import pki_settings
    from pki.issuance import chain_for

    cert = record.certificate
    payload = dict(record.payload)
    event = str(payload.get("event", record.kind))
    renewed = record.kind == NotificationKind.CERTIFICATE_RENEWED
    pem = (
        "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain_for(cert))
        if renewed
        else ""
    )
    if record.channel == NotificationChannel.WEBHOOK:
        body: dict[str, object] = {
            "event": event,
            "delivery": record.idempotency_key,
            "certificate": _cert_summary(cert),
            **{k: v for k, v in payload.items() if k not in ("event", "subject", "body", "renewed_from_id")},
        }
        if renewed:
            body["pem"] = pem  # the certificate and its chain, as the API's chain/ serves it
        send_webhook(
            url=record.recipient,
            event=event,
            payload=body,
            delivery_id=record.idempotency_key,
            timestamp=int(now.timestamp()),
        )
        return
    if renewed:
        successor = (
            f"{pki_settings().base_url}/api/v1/certificates/{payload.get('renewed_from_id')}/successor/"
        )
        names = ", ".join(cert.san_text.splitlines()) or cert.subject
        text = (
            f"The certificate {payload.get('renewed_from')} was renewed: its successor is serial "
            f"{cert.serial}, valid until {cert.not_after:%Y-%m-%d %H:%M} UTC, for {names}.\n\n"
            f"Deploy it; the API serves it at {successor}\n\n{pem}"
        )
    else:
        text = str(payload.get("body", ""))
    send_email(
        recipients=record.recipient.splitlines(),
        subject=str(payload.get("subject", f"[KMI] {event}")),
        body=text,
        delivery_id=record.idempotency_key,
    )


def _send(record: NotificationRecord, now: dt.datetime) -> None:
    if record.kind in (NotificationKind.CERTIFICATE_RENEWED, NotificationKind.CA_COMPROMISE):
        _send_event(record, now)
        return
    cert = record.certificate
    days_left = max(0, (cert.not_after - now) // DAY)
    is_ca = record.kind == NotificationKind.CA_EXPIRY
    event = "ca.expiring" if is_ca else "certificate.expiring"
    authority = CertificateAuthority.objects.filter(certificate=cert).first() if is_ca else None
    what = f"CA certificate of {authority.name}" if authority else f"certificate {cert.subject}"
    if record.channel == NotificationChannel.WEBHOOK:
        payload = {
            "event": event,
            "delivery": record.idempotency_key,
            "threshold_days": record.threshold_days,
            "days_left": days_left,
            "certificate": _cert_summary(cert),
        }
        if authority is not None:
            payload["authority"] = authority.name
        send_webhook(
            url=record.recipient,
            event=event,
            payload=payload,
            delivery_id=record.idempotency_key,
            timestamp=int(now.timestamp()),
        )
        return
    action = (
        "Roll the CA over (new CA key and certificate) before it expires; certificates it issued "
        "cannot outlive it."
        if is_ca
        else "Renew it (KMI renew, ACME or the REST API) and deploy the new certificate."
    )
    body = (
        f"The {what} expires in {days_left} day(s), at {cert.not_after:%Y-%m-%d %H:%M} UTC.\n\n"
        f"Serial: {cert.serial}\nSubject: {cert.subject}\nNames: {', '.join(cert.san_text.splitlines())}\n"
        f"Issuer CA: {cert.ca.name if cert.ca else '-'}\nSHA-256: {cert.fingerprint_sha256}\n\n"
        f"{action}\n"
    )
    send_email(
        recipients=record.recipient.splitlines(),
        subject=f"[KMI] {what} expires in {days_left} day(s)",
        body=body,
        delivery_id=record.idempotency_key,
    )


def _announce_sent(record: NotificationRecord) -> Callable[[], None]:
    rid, channel, kind = record.pk, str(record.channel), str(record.kind)

    def announce() -> None:
        notification_sent.send(sender=NotificationRecord, record_id=rid, channel=channel, kind=kind)

    return announce


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)


def deliver_notices(*, now: dt.datetime | None = None, limit: int = 10_000) -> DeliveryReport:
    """Claim due notices one at a time, send each, and record the outcome."""
    now = resolve(now)
    conf = lifecycle_settings()
    report = DeliveryReport()
    for _ in range(limit):
        record = _claim_next(now)
        if record is None:
            break
        try:
            _send(record, now)
        except Exception as exc:  # one bad notice (bad address, a bug) must not stop the rest
            if not isinstance(exc, NotificationFailed):
                log.exception("notice %s failed unexpectedly", record.pk)
            give_up = record.attempts >= conf.notify_max_attempts
            record.state = NotificationState.ABANDONED if give_up else NotificationState.FAILED
            backoff = conf.notify_retry_seconds * 2 ** (record.attempts - 1)
            record.next_attempt_at = None if give_up else now + dt.timedelta(seconds=backoff)
            record.last_error = str(exc)[:2000]
            record.save(update_fields=["state", "next_attempt_at", "last_error"])
            (report.abandoned if give_up else report.failed).append(record.pk)
            log.warning("notice %s attempt %d failed: %s", record.pk, record.attempts, exc)
            continue
        with transaction.atomic():
            NotificationRecord.objects.filter(pk=record.pk).update(
                state=NotificationState.SENT, sent_at=now, last_error=""
            )
            transaction.on_commit(_announce_sent(record))
        report.sent.append(record.pk)
    return report


def expiry_scan(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Plan the notices now due and deliver every claimable notice (new ones and retries)."""
    now = resolve(now)
    due = plan_expiry_notices(now=now)
    report = deliver_notices(now=now)
    return {
        "due": due,
        "sent": len(report.sent),
        "failed": len(report.failed),
        "abandoned": len(report.abandoned),
    }


# --- auto-renewal ------------------------------------------------------------------------------
def due_for_auto_renewal(now: dt.datetime) -> QuerySet[Certificate]:
    """Unrevoked auto-renew certificates inside their renewal window: ``renew_before_days`` (set at
    issuance from the enrollment or the profile; else ``KMI_AUTO_RENEW_DAYS``) before notAfter.

    The key is the client's (renewed onto the same public key, the successor delivered to the
    owner) or one KMI holds that is still active.
    """
    days = Coalesce(F("renew_before_days"), Value(lifecycle_settings().auto_renew_days))
    window = ExpressionWrapper(days * Value(DAY, output_field=DurationField()), output_field=DurationField())
    return (
        Certificate.objects.valid(now)
        .filter(auto_renew=True, is_ca=False)
        .filter(Q(key__isnull=True) | Q(key__state=KeyState.ACTIVE))
        .annotate(renew_from=ExpressionWrapper(F("not_after") - window, output_field=DateTimeField()))
        .filter(renew_from__lte=now)
        .exclude(_has_live_successor())
        # A key revoked for keyCompromise is never certified again: nothing to renew onto.
        .exclude(key_fingerprint__in=BlockedKey.objects.values("spki_sha256"))
    )


def _submit_auto_renewal(cert: Certificate, *, actor: str, now: dt.datetime) -> None:
    """Submit the renewal of ``cert`` for review unless one is waiting already."""
    waiting = cert.renewal_requests.filter(state__in=[RequestState.PENDING, RequestState.APPROVED])
    if waiting.exists():
        return
    try:
        with transaction.atomic():
            submit_renewal(certificate=cert, actor=actor, now=now)
    except PKIError as exc:
        log.warning("auto-renewal of %s (%s) could not be submitted: %s", cert.serial, cert.subject, exc)


def auto_renew_certificates(*, actor: str = ACTOR, now: dt.datetime | None = None) -> list[int]:
    """Renew every certificate due for auto-renewal (same key, or a new one per the setting).

    Each certificate is locked (skipping ones another worker holds) and re-checked for a
    successor under the lock, so a retry or a second worker never renews one twice.
    Returns the ids of the new certificates.
    """
    now = resolve(now)
    new_key = lifecycle_settings().auto_renew_new_key
    renewed: list[int] = []
    for pk in list(due_for_auto_renewal(now).values_list("pk", flat=True)):
        with transaction.atomic():
            cert = (
                due_for_auto_renewal(now)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("ca", "profile", "key")
                .filter(pk=pk)
                .first()
            )
            if cert is None:
                continue
            if needs_approval(cert):
                # Renewal is issuance: under a profile that needs approval KMI asks (once) and a
                # reviewer decides; the successor keeps the key.
                _submit_auto_renewal(cert, actor=actor, now=now)
                continue
            try:
                with transaction.atomic():
                    successor_key = None
                    if new_key and cert.key is not None:
                        successor_key = generate_key(
                            key_type=cert.key.key_type, purpose=cert.key.purpose, actor=actor, now=now
                        )
                    successor = renew_certificate(
                        certificate=cert, actor=actor, new_key=successor_key, now=now
                    )
                    plan_renewal_notice(certificate=successor, renewed_from=cert, now=now)
            except PKIError as exc:
                log.warning("auto-renewal of %s (%s) failed: %s", cert.serial, cert.subject, exc)
                continue
            renewed.append(successor.pk)
    return renewed


# --- key deactivation and destruction ---------------------------------------------------------
def deactivate_key(*, key: Key, actor: str, reason: str = "", now: dt.datetime | None = None) -> Key:
    """Move a key to the NIST SP 800-57 *deactivated* state; CAs holding it stop signing.

    Idempotent: a key already deactivated, compromised or destroyed is returned unchanged.
    """
    now = resolve(now)
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        if key.state in (KeyState.DEACTIVATED, KeyState.COMPROMISED, KeyState.DESTROYED):
            return key
        previous = key.state
        key.state = KeyState.DEACTIVATED
        key.deactivated_at = now
        key.save(update_fields=["state", "deactivated_at"])
        audit.record(
            action="key.deactivated",
            actor=actor,
            obj=key,
            details={"previous_state": previous, "reason": reason},
            now=now,
        )
        disable_cas_holding(key, actor=actor, reason=f"its key was deactivated: {reason}", now=now)
    return key


def keys_with_all_certificates_expired(now: dt.datetime) -> QuerySet[Key]:
    """Active or suspended keys that have certificates, none of which is still unexpired."""
    live = Certificate.objects.filter(key=OuterRef("pk"), not_after__gt=now)
    return (
        Key.objects.filter(state__in=[KeyState.ACTIVE, KeyState.SUSPENDED])
        .filter(Exists(Certificate.objects.filter(key=OuterRef("pk"))))
        .exclude(Exists(live))
    )


def deactivate_expired_keys(*, actor: str = ACTOR, now: dt.datetime | None = None) -> list[str]:
    """Deactivate every key whose certificates have all expired; return their ids."""
    now = resolve(now)
    done: list[str] = []
    for pk in list(keys_with_all_certificates_expired(now).values_list("pk", flat=True)):
        with transaction.atomic():
            key = keys_with_all_certificates_expired(now).select_for_update(skip_locked=True).filter(pk=pk)
            found = key.first()
            if found is None:
                continue
            deactivate_key(key=found, actor=actor, reason="all its certificates have expired", now=now)
        done.append(str(pk))
    return done


def keys_past_retention(now: dt.datetime) -> QuerySet[Key]:
    """Deactivated or compromised keys (not escrowed) whose retention period has ended."""
    days = lifecycle_settings().key_retention_days
    if days == 0:
        return Key.objects.none()
    cutoff = now - days * DAY
    return Key.objects.filter(escrow=False).filter(
        Q(state=KeyState.DEACTIVATED, deactivated_at__lte=cutoff)
        | Q(state=KeyState.COMPROMISED, compromised_at__lte=cutoff)
    )


def destroy_keys_past_retention(*, actor: str = ACTOR, now: dt.datetime | None = None) -> list[str]:
    """Crypto-shred every key past ``KMI_KEY_RETENTION_DAYS`` (via ``destroy_key``); return their ids."""
    from pki.destruction import destroy_key

    now = resolve(now)
    days = lifecycle_settings().key_retention_days
    done: list[str] = []
    for pk in list(keys_past_retention(now).values_list("pk", flat=True)):
        with transaction.atomic():
            key = keys_past_retention(now).select_for_update(skip_locked=True).filter(pk=pk).first()
            if key is None:
                continue
            try:
                with transaction.atomic():
                    destroy_key(
                        key=key,
                        actor=actor,
                        reason=f"retention of {days} days ended",
                        retention=True,
                        now=now,
                    )
            except InvalidState as exc:
                log.warning("key %s is past retention but was not destroyed: %s", pk, exc)
                continue
        done.append(str(pk))
    return done


# --- KMI's own TLS certificate -------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_service_cert(cert_path: Path, key: ec.EllipticCurvePrivateKey) -> Certificate | None:
    try:
        first = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None
    if first.public_key() != key.public_key():
        return None
    der = first.public_bytes(serialization.Encoding.DER)
    return Certificate.objects.filter(fingerprint_sha256=hashlib.sha256(der).hexdigest()).first()


def ensure_service_certificate(
    *,
    names: tuple[str, ...],
    out_dir: Path,
    ca: CertificateAuthority,
    profile: Profile,
    renew_days: int,
    actor: str,
    now: dt.datetime | None = None,
) -> tuple[Certificate, bool]:
    """Keep ``out_dir/<name>.crt`` (certificate + chain) and ``<name>.key`` current for KMI's own TLS.

    The key is made here once (EC P-256, file mode 0600) and kept across renewals; a new
    certificate is issued from ``ca`` under ``profile`` when there is none, when it is revoked
    or not issued by ``ca``, or when it expires within ``renew_days``. Returns the certificate
    and whether it changed (so a proxy knows to reload).
    """
    now = resolve(now)
    if not names:
        raise ValueError("a service certificate needs at least one DNS name")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = out_dir / f"{names[0]}.key", out_dir / f"{names[0]}.crt"
    if key_path.exists():
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise InvalidState(f"{key_path} is not an EC key")
        private_key = loaded
    else:
        private_key = ec.generate_private_key(ec.SECP256R1())
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_atomic(key_path, pem, 0o600)
    current = _current_service_cert(cert_path, private_key)
    if (
        current is not None
        and current.revoked_at is None
        and current.ca_id == ca.pk
        and current.not_after - now > renew_days * DAY
    ):
        return current, False
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    # It runs where the keys are (the signing queue's task, or the operator's command): it signs here.
    with signing_in_place():
        issued = sign_csr(ca=ca, profile=profile, csr=csr, actor=actor, now=now)
    chain = [issued.x509(), *ca.chain()[:-1]] if len(ca.chain()) > 1 else [issued.x509()]
    pem_chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    _write_atomic(cert_path, pem_chain, 0o644)
    log.info("service certificate for %s issued: serial %s", ", ".join(names), issued.serial)
    return issued, True


def renew_service_certificates(*, actor: str = ACTOR, now: dt.datetime | None = None) -> list[str]:
    """Run ``ensure_service_certificate`` for ``KMI_SERVICE_CERT_NAMES``; return the serials issued."""
    conf = lifecycle_settings()
    if not conf.service_cert_names or not conf.service_cert_dir:
        return []
    try:
        ca = CertificateAuthority.objects.get(name=conf.service_ca)
        profile = Profile.objects.get(name=conf.service_profile)
    except (CertificateAuthority.DoesNotExist, Profile.DoesNotExist):
        raise NotFound(
            f"KMI_SERVICE_CA={conf.service_ca!r} / KMI_SERVICE_PROFILE={conf.service_profile!r} not found"
        ) from None
    cert, changed = ensure_service_certificate(
        names=conf.service_cert_names,
        out_dir=Path(conf.service_cert_dir),
        ca=ca,
        profile=profile,
        renew_days=conf.service_renew_days,
        actor=actor,
        now=now,
    )
    return [cert.serial] if changed else []


# --- approved requests nobody issued -----------------------------------------------------------

# Errors that may pass (a key backend, the CA, the signing queue): the request is tried again on
# the next run until it is too old. Any other refusal (the policy changed) fails it at once.
_TRANSIENT = (exceptions.KeyBackendError, exceptions.CAUnavailable, exceptions.SigningUnavailable)


def reconcile_approved_requests(
    *, actor: str = ACTOR, now: dt.datetime | None = None
) -> dict[str, list[int]]:
    """Issue or give up requests left ``approved`` (the client gave up waiting, the signer was
    down, a hand-over message was lost).

    A request approved more than ``KMI_RECONCILE_AFTER_SECONDS`` ago is issued through the same
    signing use case as any other (``issue_request``: the request's CA, profile and CSR are
    checked again there); one older than ``KMI_APPROVED_MAX_AGE_SECONDS``, or one the policy now
    refuses, is failed with the reason. Returns the request ids per outcome.
    """
    from pki.models.request import CertificateRequest, RequestState
    from pki.signing import execute

    now = resolve(now)
    conf = lifecycle_settings()
    settled = now - dt.timedelta(seconds=conf.reconcile_after_seconds)
    too_old = now - dt.timedelta(seconds=conf.approved_max_age_seconds)
    outcome: dict[str, list[int]] = {"issued": [], "failed": [], "retry": []}
    stranded = CertificateRequest.objects.filter(state=RequestState.APPROVED).filter(
        Q(reviewed_at__lte=settled) | Q(reviewed_at__isnull=True, created_at__lte=settled)
    )
    for request in stranded.order_by("pk")[:RECONCILE_BATCH]:
        approved_at = request.reviewed_at or request.created_at
        try:
            if approved_at <= too_old:
                fail_request(
                    request=request,
                    reason=f"approved at {approved_at:%Y-%m-%d %H:%M:%S}Z and never issued; given up",
                    actor=actor,
                    now=now,
                )
                outcome["failed"].append(request.pk)
                continue
            execute("issue_request", request_id=request.pk, actor=actor)
            outcome["issued"].append(request.pk)
        except _TRANSIENT as exc:
            log.warning("request %s stays approved: %s", request.pk, exc)
            outcome["retry"].append(request.pk)
        except exceptions.InvalidState:
            continue  # issued or failed meanwhile by another caller
        except PKIError as exc:
            fail_request(request=request, reason=f"refused when issued later: {exc}", actor=actor, now=now)
            outcome["failed"].append(request.pk)
    return outcome


RECONCILE_BATCH = 500
