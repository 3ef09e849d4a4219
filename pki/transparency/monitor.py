"""Threat signals: a monitor that notices misuse and breakage and raises alerts as rows.

``run_monitor`` (Celery beat every minute, ``manage.py monitor --once``) runs every detector,
then opens one alert per new episode (``pki.models.alert``) and refreshes the ones still live;
``deliver_alerts`` sends each new episode once by the signed webhook and e-mail of
``KMI_ALERT_WEBHOOK_URL`` / ``KMI_ALERT_EMAILS``. Operators acknowledge and resolve alerts
(``acknowledge_alert``, ``resolve_alert``: audited). Health alerts (audit chain, CRL, OCSP,
signer, key backend, CA expiry) resolve themselves when their condition clears.

Detectors read what KMI already records: audit events (issuance, refused blocked keys, failed
ACME challenges), certificates (names), django-axes rows (console logins), a Redis counter of
API 4xx per token (web/api/errors.py), and the health figures of ``pki.health``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from publicsuffixlist import PublicSuffixList

from pki import audit
from pki.clock import resolve
from pki.exceptions import InvalidState, NotFound, NotificationFailed, PolicyViolation
from pki.models.alert import Alert, AlertKind, AlertSeverity, AlertState, MonitorRun
from pki.models.audit import AuditEvent
from pki.models.authority import CAGeneration, CAState, CertificateAuthority, GenerationState
from pki.models.certificate import Certificate
from pki.models.health import AuditVerification

log = logging.getLogger(__name__)

ACTOR = "system:monitor"
ISSUED_ACTIONS = ("certificate.issued", "certificate.renewed")
BLOCKED_KEY_ACTION = "issuance.refused_blocked_key"
CHALLENGE_INVALID_ACTION = "acme.challenge.invalid"
BURST_WINDOW = dt.timedelta(minutes=10)
HOUR = dt.timedelta(hours=1)
BASELINE_DAYS = 7
NEW_DOMAIN_MIN_HISTORY = 20  # certificates a profile must have issued before a new name is unusual
HEALTH_KINDS = frozenset(
    {
        AlertKind.AUDIT_CHAIN,
        AlertKind.CRL_STALE,
        AlertKind.OCSP_STALE,
        AlertKind.SIGNER_DOWN,
        AlertKind.KEY_BACKEND,
        AlertKind.CA_EXPIRY,
    }
)
ERRORS_HASH = "monitor:api4xx"  # one Redis hash a minute: token prefix -> 4xx count


@dataclass(frozen=True)
class MonitorPolicy:
    """Thresholds (``KMI_MONITOR_*``)."""

    spike_factor: float = 5.0
    spike_floor: int = 20
    burst: int = 10
    ca_expiry_days: int = 30

    @classmethod
    def from_settings(cls) -> MonitorPolicy:
        """The policy configured in ``settings.KMI_MONITOR`` (defaults where unset)."""
        conf: dict[str, Any] = getattr(settings, "KMI_MONITOR", {})
        return cls(
            spike_factor=float(conf.get("SPIKE_FACTOR", cls.spike_factor)),
            spike_floor=int(conf.get("SPIKE_FLOOR", cls.spike_floor)),
            burst=int(conf.get("BURST", cls.burst)),
            ca_expiry_days=int(conf.get("CA_EXPIRY_DAYS", cls.ca_expiry_days)),
        )


@dataclass(frozen=True)
class Signal:
    """One thing a detector saw now."""

    kind: AlertKind
    subject: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    severity: AlertSeverity = AlertSeverity.WARNING


# --- detectors -----------------------------------------------------------------------------------


def _issuance_counts(start: dt.datetime, end: dt.datetime) -> Counter[tuple[str, str, str]]:
    """Issuances in [start, end) by (CA, profile, actor)."""
    rows = (
        AuditEvent.objects.filter(action__in=ISSUED_ACTIONS, timestamp__gte=start, timestamp__lt=end)
        .values_list("details__ca", "details__profile", "actor")
        .annotate(n=Count("id"))
    )
    return Counter({(str(ca), str(profile), actor): n for ca, profile, actor, n in rows})


def issuance_spikes(*, now: dt.datetime, policy: MonitorPolicy) -> Iterator[Signal]:
    """Issuance in the last hour per CA, profile and actor (ACME account, token, user) far above
    the same hour of the last 7 days; one signal per CA naming every dimension that spiked."""
    current = _issuance_counts(now - HOUR, now)
    if not current:
        return
    past = Counter[tuple[str, str, str]]()
    for day in range(1, BASELINE_DAYS + 1):
        past.update(_issuance_counts(now - HOUR - dt.timedelta(days=day), now - dt.timedelta(days=day)))
    spiking: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for position, label in ((0, "ca"), (1, "profile"), (2, "actor")):
        now_by: Counter[tuple[str, str]] = Counter()  # (ca, value) -> count
        base_by: Counter[tuple[str, str]] = Counter()
        for key, n in current.items():
            now_by[(key[0], key[position])] += n
        for key, n in past.items():
            base_by[(key[0], key[position])] += n
        for (ca, value), n in now_by.items():
            baseline = base_by[(ca, value)] / BASELINE_DAYS
            if n >= policy.spike_floor and n > policy.spike_factor * max(baseline, 1.0):
                spiking[ca].append({label: value, "last_hour": n, "baseline": round(baseline, 2)})
    for ca, dims in spiking.items():
        top = max(d["last_hour"] for d in dims)
        yield Signal(
            AlertKind.ISSUANCE_SPIKE,
            f"ca:{ca}",
            f"CA {ca} issued up to {top} certificates in the last hour, far above its baseline",
            {"dimensions": dims},
        )


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The public suffix list, parsed on first use (a quarter of a second: not in every process)."""
    return PublicSuffixList()


def registrable_domain(name: str) -> str:
    """The registrable domain (public suffix + 1 label) of a DNS name; the name itself otherwise."""
    name = name.lower().rstrip(".").removeprefix("*.")
    return _public_suffixes().privatesuffix(name) or name


def _dns_names(san_text: str) -> Iterator[str]:
    for line in san_text.splitlines():
        kind, _, value = line.partition(":")
        if kind == "dns" and value:
            yield value


def _had_domain(scope: dict[str, Any], domain: str, since: dt.datetime) -> bool:
    """Did a certificate of ``scope`` (a profile, an ACME account) before ``since`` name ``domain``?"""
    before = Certificate.objects.filter(created_at__lt=since, search_text__icontains=domain, **scope)
    return any(
        registrable_domain(n) == domain
        for text in before.values_list("san_text", flat=True)[:50]
        for n in _dns_names(text)
    )


def new_domains(*, since: dt.datetime, now: dt.datetime) -> Iterator[Signal]:
    """Certificates issued since the last run for a registrable domain that their profile, or
    their ACME account, never had a certificate for before (once that scope has a history)."""
    fresh = (
        Certificate.objects.filter(created_at__gte=since, created_at__lt=now, profile__isnull=False)
        .values_list(
            "profile_id", "profile__name", "acme_order__account_id", "san_text", "serial", "created_at"
        )
        .order_by("created_at")
    )
    seen: dict[str, dict[str, Any]] = {}
    history: dict[tuple[str, int], int] = {}
    for profile_id, profile_name, account_id, san_text, serial, created_at in fresh:
        scopes: list[tuple[str, dict[str, Any]]] = [(f"profile {profile_name}", {"profile_id": profile_id})]
        if account_id is not None:
            scopes.append((f"ACME account {account_id}", {"acme_order__account_id": account_id}))
        for label, scope in scopes:
            key = (label, 0)
            if key not in history:
                history[key] = Certificate.objects.filter(created_at__lt=since, **scope).count()
            if history[key] < NEW_DOMAIN_MIN_HISTORY:
                continue  # a new profile's or account's first names are not unusual yet
            for domain in {registrable_domain(n) for n in _dns_names(san_text)}:
                if domain in seen and label in seen[domain]["new_for"]:
                    continue
                if _had_domain(scope, domain, since):
                    continue
                entry = seen.setdefault(
                    domain, {"serial": serial, "first_issued": created_at.isoformat(), "new_for": []}
                )
                entry["new_for"].append(label)
    for domain, info in seen.items():
        yield Signal(
            AlertKind.NEW_DOMAIN,
            f"domain:{domain}",
            f"{domain} was never issued under {' nor '.join(info['new_for'])} before",
            {"domain": domain, **info},
        )


def _audit_bursts(action: str, *, now: dt.datetime, floor: int) -> Iterator[tuple[str, int]]:
    rows = (
        AuditEvent.objects.filter(action=action, timestamp__gte=now - BURST_WINDOW, timestamp__lt=now)
        .values_list("actor")
        .annotate(n=Count("id"))
    )
    for actor, n in rows:
        if n >= floor:
            yield actor, n


def blocked_key_attempts(*, now: dt.datetime) -> Iterator[Signal]:
    """Any attempt to certify a blocked (compromised) key: the refusals the blocklist audits."""
    for actor, n in _audit_bursts(BLOCKED_KEY_ACTION, now=now, floor=1):
        yield Signal(
            AlertKind.BLOCKED_KEY,
            f"actor:{actor}",
            f"{actor} tried {n} time(s) in 10 minutes to certify a blocked key",
            {"attempts": n},
            AlertSeverity.CRITICAL,
        )


def challenge_failures(*, now: dt.datetime, policy: MonitorPolicy) -> Iterator[Signal]:
    """ACME accounts whose challenges fail in a burst (someone probing names they do not hold)."""
    for actor, n in _audit_bursts(CHALLENGE_INVALID_ACTION, now=now, floor=policy.burst):
        yield Signal(
            AlertKind.CHALLENGE_FAILURES,
            f"acme:{actor.removeprefix('acme:')}",
            f"ACME account {actor} failed {n} challenges in 10 minutes",
            {"failures": n},
        )


def login_failures(*, now: dt.datetime, policy: MonitorPolicy) -> Iterator[Signal]:
    """Failed console logins in a burst, per source address (django-axes' failure log)."""
    from axes.models import AccessFailureLog

    rows = (
        AccessFailureLog.objects.filter(attempt_time__gte=now - BURST_WINDOW, attempt_time__lt=now)
        .values_list("ip_address")
        .annotate(n=Count("id"))
    )
    for address, n in rows:
        if n >= policy.burst:
            yield Signal(
                AlertKind.LOGIN_FAILURES,
                f"ip:{address}",
                f"{n} failed console logins from {address} in 10 minutes",
                {"failures": n},
            )


def _token_errors_key(minute: str) -> str:
    prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX", "") or "kmi"
    return f"{prefix}:{ERRORS_HASH}:{minute}"


def _redis() -> Any:
    url = str(getattr(settings, "REDIS_URL", "") or "")
    if not url:
        return None
    from pki.redisclient import client

    return client(url)


def count_token_error(*, token_prefix: str, now: dt.datetime | None = None) -> None:
    """Count one 4xx answered to an API token (one HINCRBY; never raises: it is a signal only)."""
    redis = _redis()
    if redis is None:
        return
    key = _token_errors_key(resolve(now).strftime("%Y%m%d%H%M"))
    try:
        pipe = redis.pipeline()
        pipe.hincrby(key, token_prefix, 1)
        pipe.expire(key, 1200)
        pipe.execute()
    except Exception:
        log.debug("cannot count a token error", exc_info=True)


def token_errors(*, now: dt.datetime, policy: MonitorPolicy) -> Iterator[Signal]:
    """API tokens answered with many 4xx in the last 10 minutes (counted in Redis per minute)."""
    redis = _redis()
    if redis is None:
        return
    totals: Counter[str] = Counter()
    for m in range(10):
        key = _token_errors_key((now - dt.timedelta(minutes=m)).strftime("%Y%m%d%H%M"))
        for prefix, n in (redis.hgetall(key) or {}).items():
            totals[prefix.decode() if isinstance(prefix, bytes) else str(prefix)] += int(n)
    for prefix, n in totals.items():
        if n >= policy.burst * 5:
            yield Signal(
                AlertKind.TOKEN_ERRORS,
                f"token:{prefix}",
                f"API token {prefix} got {n} client errors (4xx) in 10 minutes",
                {"errors": n},
            )


def health_signals(*, now: dt.datetime, policy: MonitorPolicy) -> Iterator[Signal]:
    """Broken audit chain, stale CRL or OCSP, a silent signer, unreachable key backends, CA expiry."""
    from pki.health import queue_health, revocation_health
    from pki.keys.health import key_backend_status
    from pki.lifecycle_conf import lifecycle_settings

    last = AuditVerification.objects.order_by("-started_at").first()
    if last is not None and not last.ok:
        yield Signal(
            AlertKind.AUDIT_CHAIN,
            "audit",
            f"the audit chain is broken in {len(last.breaks)} stream(s) ({last.started_at:%Y-%m-%d %H:%M})",
            {"breaks": last.breaks[:10]},
            AlertSeverity.CRITICAL,
        )
    for row in revocation_health(now=now):
        if row.ca.state == CAState.DISABLED:
            continue
        if row.crl_number is not None and row.crl_stale:
            yield Signal(
                AlertKind.CRL_STALE,
                f"ca:{row.ca.name}",
                f"the CRL of {row.ca.name} is past its nextUpdate",
                {"next_update": row.crl_next_update.isoformat() if row.crl_next_update else None},
                AlertSeverity.CRITICAL,
            )
        if row.ocsp_responder_not_after is not None and row.ocsp_stale:
            yield Signal(
                AlertKind.OCSP_STALE, f"ca:{row.ca.name}", f"OCSP responses of {row.ca.name} are stale"
            )
    for queue in queue_health(now=now):
        if queue.queue == "signing" and queue.seen_at is not None and not queue.alive:
            yield Signal(
                AlertKind.SIGNER_DOWN,
                "queue:signing",
                f"no signing worker has answered since {queue.seen_at:%Y-%m-%d %H:%M:%S}",
                {"last_seen": queue.seen_at.isoformat()},
                AlertSeverity.CRITICAL,
            )
    # With KMI_SIGNING=worker only the signing workers hold keys: a monitor elsewhere would see
    # every backend as unreachable, and the signer's heartbeat (above) watches them instead.
    in_process = not lifecycle_settings().signs_on_worker
    for status in key_backend_status() if in_process else []:
        if not status.ok:
            yield Signal(
                AlertKind.KEY_BACKEND,
                f"ca:{status.ca}",
                f"the key backend {status.backend} of {status.ca} is unreachable",
                {"problem": status.problem},
                AlertSeverity.CRITICAL,
            )
    soon = now + dt.timedelta(days=policy.ca_expiry_days)
    for ca in CertificateAuthority.objects.select_related("certificate").exclude(state=CAState.DISABLED):
        cert = ca.certificate
        if cert is not None and cert.not_after <= soon:
            yield Signal(
                AlertKind.CA_EXPIRY,
                f"ca:{ca.name}",
                f"the CA certificate of {ca.name} expires {cert.not_after:%Y-%m-%d}",
                {"not_after": cert.not_after.isoformat()},
            )
    # After a rollover the previous generation's key still signs CRLs (and answers OCSP) for
    # what it issued: its certificate running out leaves relying parties without revocation.
    previous = CAGeneration.objects.filter(
        state=GenerationState.PREVIOUS, certificate__not_after__lte=soon
    ).select_related("ca", "certificate")
    for generation in previous:
        cert = generation.certificate
        assert cert is not None  # filtered on its not_after
        yield Signal(
            AlertKind.CA_EXPIRY,
            f"ca:{generation.ca.name}:g{generation.number}",
            f"the CRL-signing certificate of {generation.ca.name} generation {generation.number} "
            f"(kept for CRLs and OCSP after a rollover) expires {cert.not_after:%Y-%m-%d}",
            {"not_after": cert.not_after.isoformat(), "generation": generation.number},
        )


# --- the run -------------------------------------------------------------------------------------


@dataclass
class MonitorReport:
    """What one run did."""

    raised: list[Alert] = field(default_factory=list)
    refreshed: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)


def _episode(signal: Signal, now: dt.datetime) -> str:
    return hashlib.sha256(f"{signal.kind}|{signal.subject}|{now.isoformat()}".encode()).hexdigest()


def collect(*, now: dt.datetime, since: dt.datetime, policy: MonitorPolicy) -> list[Signal]:
    """Every detector's signals at ``now`` (new names since ``since``)."""
    out: list[Signal] = []
    out += issuance_spikes(now=now, policy=policy)
    out += new_domains(since=since, now=now)
    out += blocked_key_attempts(now=now)
    out += challenge_failures(now=now, policy=policy)
    out += login_failures(now=now, policy=policy)
    out += token_errors(now=now, policy=policy)
    out += health_signals(now=now, policy=policy)
    return out


def run_monitor(
    *, now: dt.datetime | None = None, policy: MonitorPolicy | None = None, deliver: bool = True
) -> MonitorReport:
    """Run every detector; open an alert per new episode, refresh live ones, resolve cleared
    health alerts; then deliver the new episodes (once each)."""
    now = resolve(now)
    policy = policy or MonitorPolicy.from_settings()
    last = MonitorRun.objects.order_by("-window_end").first()
    since = last.window_end if last is not None and last.window_end < now else now - HOUR
    signals = collect(now=now, since=since, policy=policy)
    report = MonitorReport()
    with transaction.atomic():
        for signal in signals:
            alert, created = _raise(signal, now)
            (report.raised if created else report.refreshed).append(alert)
        live = {(s.kind, s.subject) for s in signals}
        cleared = (
            Alert.objects.select_for_update().filter(kind__in=HEALTH_KINDS).exclude(state=AlertState.RESOLVED)
        )
        for alert in cleared:
            if (alert.kind, alert.subject) not in live:
                report.resolved.append(_resolve(alert, actor=ACTOR, note="condition cleared", now=now))
        MonitorRun.objects.create(
            started_at=now, window_end=now, raised=len(report.raised), refreshed=len(report.refreshed)
        )
    if deliver and report.raised:
        deliver_alerts(now=now)
    return report


def _raise(signal: Signal, now: dt.datetime) -> tuple[Alert, bool]:
    live = (
        Alert.objects.select_for_update()
        .filter(kind=signal.kind, subject=signal.subject)
        .exclude(state=AlertState.RESOLVED)
    )
    alert = live.first()
    if alert is not None:
        alert.last_seen = now
        alert.count += 1
        alert.details = {**alert.details, "latest": signal.details}
        alert.save(update_fields=["last_seen", "count", "details"])
        return alert, False
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=signal.kind,
                subject=signal.subject[:255],
                episode=_episode(signal, now),
                severity=signal.severity,
                summary=signal.summary[:300],
                details=signal.details,
                first_seen=now,
                last_seen=now,
            )
    except IntegrityError:  # another monitor opened it a moment ago: that is the episode
        return live.get(), False
    audit.record(
        action="alert.raised",
        actor=ACTOR,
        obj=alert,
        details={"kind": alert.kind, "subject": alert.subject, "summary": alert.summary},
        scope="monitor",
        now=now,
    )
    return alert, True


def _resolve(alert: Alert, *, actor: str, note: str, now: dt.datetime) -> Alert:
    alert.state = AlertState.RESOLVED
    alert.resolved_by = actor
    alert.resolved_at = now
    alert.save(update_fields=["state", "resolved_by", "resolved_at"])
    audit.record(
        action="alert.resolved",
        actor=actor,
        obj=alert,
        details={"kind": alert.kind, "subject": alert.subject, "note": note},
        scope="monitor",
        now=now,
    )
    return alert


def _locked(alert_id: int) -> Alert:
    try:
        return Alert.objects.select_for_update().get(pk=alert_id)
    except Alert.DoesNotExist:
        raise NotFound(f"no alert {alert_id}") from None


def acknowledge_alert(*, alert_id: int, actor: str, note: str = "", now: dt.datetime | None = None) -> Alert:
    """Someone is on it: an open alert becomes acknowledged (audited)."""
    now = resolve(now)
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.state != AlertState.OPEN:
            raise InvalidState(f"alert {alert_id} is {alert.state}, not open")
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_by = actor
        alert.acknowledged_at = now
        alert.save(update_fields=["state", "acknowledged_by", "acknowledged_at"])
        audit.record(
            action="alert.acknowledged",
            actor=actor,
            obj=alert,
            details={"kind": alert.kind, "subject": alert.subject, "note": note[:500]},
            scope="monitor",
            now=now,
        )
    return alert


def resolve_alert(*, alert_id: int, actor: str, note: str, now: dt.datetime | None = None) -> Alert:
    """The episode is over (with a note saying why): the next detection opens a new one."""
    now = resolve(now)
    if not note.strip():
        raise PolicyViolation("resolving an alert needs a note")
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.state == AlertState.RESOLVED:
            raise InvalidState(f"alert {alert_id} is already resolved")
        return _resolve(alert, actor=actor, note=note.strip()[:500], now=now)


def open_alerts() -> QuerySet[Alert]:
    """Alerts not yet resolved, newest first (the console dashboard's list)."""
    return Alert.objects.exclude(state=AlertState.RESOLVED).order_by("-last_seen")


# --- delivery --------------------------------------------------------------------------------------


def _payload(alert: Alert) -> dict[str, Any]:
    return {
        "event": "alert.raised",
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "subject": alert.subject,
            "severity": alert.severity,
            "summary": alert.summary,
            "details": alert.details,
            "first_seen": alert.first_seen.isoformat(),
            "episode": alert.episode,
        },
    }


def deliver_alerts(*, now: dt.datetime | None = None) -> int:
    """Send each undelivered episode once (webhook and e-mail); return how many were sent.

    An alert is claimed (``notified_at`` set and committed) before it is sent, so two monitors
    never send one episode twice; the episode id travels as the delivery id for receivers.
    """
    from pki.lifecycle_conf import lifecycle_settings
    from pki.notifications import send_email, send_webhook

    now = resolve(now)
    conf = lifecycle_settings()
    sent = 0
    for alert_id in list(
        Alert.objects.filter(notified_at__isnull=True)
        .exclude(state=AlertState.RESOLVED)
        .values_list("pk", flat=True)
    ):
        if not Alert.objects.filter(pk=alert_id, notified_at__isnull=True).update(notified_at=now):
            continue  # another monitor claimed it
        alert = Alert.objects.get(pk=alert_id)
        delivery_id = str(uuid.UUID(alert.episode[:32]))
        errors = []
        try:
            if conf.alert_webhook_url:
                send_webhook(
                    url=conf.alert_webhook_url,
                    event="alert.raised",
                    payload=_payload(alert),
                    delivery_id=delivery_id,
                    timestamp=int(now.timestamp()),
                )
        except NotificationFailed as exc:
            errors.append(str(exc))
        try:
            if conf.alert_emails:
                send_email(
                    recipients=conf.alert_emails,
                    subject=f"[KMI {alert.severity}] {alert.summary}",
                    body=f"{alert.summary}\n\nkind: {alert.kind}\nsubject: {alert.subject}\n"
                    f"first seen: {alert.first_seen.isoformat()}\ndetails: {alert.details}\n",
                    delivery_id=delivery_id,
                )
        except NotificationFailed as exc:
            errors.append(str(exc))
        if errors:
            log.warning("alert %s: delivery failed: %s", alert.pk, "; ".join(errors))
            Alert.objects.filter(pk=alert.pk).update(delivery_error="; ".join(errors)[:2000])
        sent += 1
    return sent
