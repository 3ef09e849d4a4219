"""Figures the console's dashboard reads instead of computing them per page view.

A worker recomputes each CA's certificate figures every ``KMI_CONSOLE_SUMMARY_SECONDS``
(``refresh_summaries``: three grouped queries for all CAs, whatever their size) and notes that
it ran (``beat``); the dashboard reads one small row per CA. A full recount, not counters kept
by every issuance and revocation: the hot issuance path (one statement per certificate) stays
as it is, the figures heal themselves after any change (an expiry needs no event at all), and
the cost is a worker's, once per interval, not each page's.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate

from pki.access import AnyUser, grants_for, visible_certificates
from pki.clock import resolve, utcnow
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.health import AuditVerification, CertificateSummary, WorkerHeartbeat

EXPIRY_WINDOWS = (7, 30, 90)
EXPIRY_WEEKS = 26
ISSUED_DAYS = 30


@dataclass
class Figures:
    """Certificate figures of one CA, or summed over several."""

    valid: int = 0
    revoked: int = 0
    expiring: dict[str, int] = field(default_factory=lambda: {str(d): 0 for d in EXPIRY_WINDOWS})
    expiry_weeks: list[int] = field(default_factory=lambda: [0] * EXPIRY_WEEKS)
    issued_days: list[int] = field(default_factory=lambda: [0] * ISSUED_DAYS)

    def add(self, other: Figures) -> None:
        """Add ``other``'s counts to these."""
        self.valid += other.valid
        self.revoked += other.revoked
        for k, v in other.expiring.items():
            self.expiring[k] = self.expiring.get(k, 0) + v
        self.expiry_weeks = [a + b for a, b in zip(self.expiry_weeks, other.expiry_weeks, strict=True)]
        self.issued_days = [a + b for a, b in zip(self.issued_days, other.issued_days, strict=True)]

    def as_json(self) -> dict[str, Any]:
        """The stored form (``CertificateSummary.counts``)."""
        return {
            "valid": self.valid,
            "revoked": self.revoked,
            "expiring": dict(self.expiring),
            "expiry_weeks": list(self.expiry_weeks),
            "issued_days": list(self.issued_days),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figures:
        """Read a stored summary (missing or misshapen parts count as zero)."""
        out = cls()
        out.valid = int(data.get("valid", 0))
        out.revoked = int(data.get("revoked", 0))
        for k in out.expiring:
            out.expiring[k] = int(data.get("expiring", {}).get(k, 0))
        weeks, days = data.get("expiry_weeks", []), data.get("issued_days", [])
        if len(weeks) == EXPIRY_WEEKS:
            out.expiry_weeks = [int(n) for n in weeks]
        if len(days) == ISSUED_DAYS:
            out.issued_days = [int(n) for n in days]
        return out


def count_by_ca(qs: QuerySet[Certificate], *, now: dt.datetime) -> dict[int, Figures]:
    """Figures of the certificates in ``qs`` per issuing CA at ``now`` (three grouped queries).

    Expiry weeks and issuance days are whole UTC days counted from ``now``'s date.
    """
    today = now.date()
    live = qs.filter(revoked_at__isnull=True, not_before__lte=now, not_after__gt=now)
    windows = {
        f"e{d}": Count("id", filter=Q(revoked_at__isnull=True, not_after__lte=now + dt.timedelta(days=d)))
        for d in EXPIRY_WINDOWS
    }
    out: dict[int, Figures] = {}
    totals = (
        qs.filter(not_after__gt=now)
        .values("ca_id")
        .annotate(
            valid=Count("id", filter=Q(revoked_at__isnull=True, not_before__lte=now)),
            revoked=Count("id", filter=Q(revoked_at__isnull=False)),
            **windows,
        )
        .order_by()
    )
    for total in totals:
        row: dict[str, Any] = dict(total)
        fig = out.setdefault(row["ca_id"], Figures())
        fig.valid, fig.revoked = row["valid"], row["revoked"]
        fig.expiring = {str(d): row[f"e{d}"] for d in EXPIRY_WINDOWS}
    horizon = now + dt.timedelta(weeks=EXPIRY_WEEKS)
    expiring = (
        live.filter(not_after__lt=horizon)
        .annotate(day=TruncDate("not_after"))
        .values("ca_id", "day")
        .annotate(n=Count("id"))
        .order_by()
    )
    for ca_id, day, n in expiring.values_list("ca_id", "day", "n"):
        week = (day - today).days // 7
        if 0 <= week < EXPIRY_WEEKS:
            out.setdefault(ca_id, Figures()).expiry_weeks[week] += n
    since = dt.datetime.combine(today - dt.timedelta(days=ISSUED_DAYS - 1), dt.time(), tzinfo=dt.UTC)
    issued = (
        qs.filter(created_at__gte=since, created_at__lte=now)
        .annotate(day=TruncDate("created_at"))
        .values("ca_id", "day")
        .annotate(n=Count("id"))
        .order_by()
    )
    for ca_id, day, n in issued.values_list("ca_id", "day", "n"):
        index = ISSUED_DAYS - 1 - (today - day).days
        if 0 <= index < ISSUED_DAYS:
            out.setdefault(ca_id, Figures()).issued_days[index] += n
    return out


def refresh_summaries(*, now: dt.datetime | None = None) -> int:
    """Recount every CA's certificate figures into ``CertificateSummary``; return the CAs done."""
    now = resolve(now)
    started = time.perf_counter()
    figures = count_by_ca(Certificate.objects.filter(ca__isnull=False), now=now)
    seconds = time.perf_counter() - started
    ca_ids = list(CertificateAuthority.objects.values_list("pk", flat=True))
    with transaction.atomic():
        for ca_id in ca_ids:
            CertificateSummary.objects.update_or_create(
                ca_id=ca_id,
                defaults={
                    "computed_at": now,
                    "counts": figures.get(ca_id, Figures()).as_json(),
                    "seconds": seconds,
                },
            )
    return len(ca_ids)


@dataclass(frozen=True)
class VisibleFigures:
    """The certificate figures a user may see and when they were counted (None: just now)."""

    figures: Figures
    as_of: dt.datetime | None
    missing_cas: tuple[int, ...]  # CAs with no summary yet (no worker ran since they were made)


def figures_for(user: AnyUser | None, *, now: dt.datetime | None = None) -> VisibleFigures:
    """What the dashboard shows ``user``: the summaries of the CAs whose certificates they see,
    plus a live count of their own certificates elsewhere (a requester's few)."""
    now = resolve(now)
    g = grants_for(user)
    total = Figures()
    if g.reads_everything:
        cas: Iterable[int] = CertificateAuthority.objects.values_list("pk", flat=True)
    else:
        cas = g.operator_cas
    wanted = set(cas)
    rows = list(CertificateSummary.objects.filter(ca_id__in=wanted))
    for row in rows:
        total.add(Figures.from_json(row.counts))
    as_of = min((row.computed_at for row in rows), default=None)
    if not g.reads_everything and g.user_id is not None:
        own = visible_certificates(user).filter(owner_id=g.user_id).exclude(ca_id__in=wanted)
        for fig in count_by_ca(own, now=now).values():
            total.add(fig)
    missing = tuple(sorted(wanted - {row.ca_id for row in rows}))
    return VisibleFigures(figures=total, as_of=as_of, missing_cas=missing)


# --- worker health -------------------------------------------------------------------------------
HEARTBEAT_SECONDS = 60.0  # each queue's heartbeat task runs this often (pki.tasks.BEAT_SCHEDULE)
MISSED_BEATS = 3  # a queue whose workers missed this many beats is shown as down


@dataclass(frozen=True)
class QueueHealth:
    """Whether some worker consumes ``queue``, as its last heartbeat tells."""

    queue: str
    seen_at: dt.datetime | None
    hostname: str
    alive: bool


def queue_health(*, now: dt.datetime | None = None) -> list[QueueHealth]:
    """The default queue's and the signing queue's workers: alive when they beat lately."""
    now = resolve(now)
    rows = {row.queue: row for row in WorkerHeartbeat.objects.all()}
    out = []
    for queue in ("celery", "signing"):
        row = rows.get(queue)
        seen = row.seen_at if row is not None else None
        alive = seen is not None and (now - seen).total_seconds() <= HEARTBEAT_SECONDS * MISSED_BEATS
        out.append(QueueHealth(queue=queue, seen_at=seen, hostname=row.hostname if row else "", alive=alive))
    return out


def beat(*, queue: str, now: dt.datetime | None = None) -> WorkerHeartbeat:
    """Note that a worker consuming ``queue`` is alive (its heartbeat task ran)."""
    row, _ = WorkerHeartbeat.objects.update_or_create(
        queue=queue, defaults={"seen_at": resolve(now), "hostname": socket.gethostname()[:255]}
    )
    return row


# --- audit verification --------------------------------------------------------------------------
def verify_audit(*, actor: str, now: dt.datetime | None = None) -> AuditVerification:
    """Verify the audit trail (chains, MACs, signed checkpoints, cross-checks:
    ``pki.audit_checkpoints.verify_trail``) and keep the result with who asked."""
    from pki.audit_checkpoints import verify_trail

    started = resolve(now)
    report = verify_trail()
    finished = utcnow() if now is None else started
    return AuditVerification.objects.create(
        started_at=started,
        finished_at=finished,
        actor=actor,
        ok=report.ok,
        streams=report.streams,
        events=report.events,
        breaks=[b.__dict__ for b in report.breaks],
    )


# --- CRL and OCSP freshness ----------------------------------------------------------------------
@dataclass(frozen=True)
class RevocationHealth:
    """One CA's newest full CRL and its pre-signed OCSP responses, and whether either is stale."""

    ca: CertificateAuthority
    crl_number: int | None
    crl_this_update: dt.datetime | None
    crl_next_update: dt.datetime | None
    crl_entries: int | None
    crl_pending: bool  # a status changed since: the next publication will carry it
    crl_stale: bool
    ocsp_responder_not_after: dt.datetime | None
    ocsp_oldest: dt.datetime | None
    ocsp_stale: bool


def revocation_health(*, now: dt.datetime | None = None) -> list[RevocationHealth]:
    """Per CA (a few small indexed queries each, never the CRL's DER): CRL age and nextUpdate,
    OCSP freshness. A CRL is stale past its nextUpdate; OCSP is stale when a stored response is
    past its nextUpdate or the CA has no delegated responder (or an expired one)."""
    from pki.models.crl import CertificateRevocationList, CRLStaleMark
    from pki.models.ocsp import OCSPResponder, OCSPResponse

    now = resolve(now)
    out = []
    responders = {
        r.ca_id: r.certificate.not_after for r in OCSPResponder.objects.select_related("certificate")
    }
    pending = set(CRLStaleMark.objects.values_list("ca_id", flat=True).distinct())
    for ca in CertificateAuthority.objects.select_related("certificate").order_by("name"):
        crl = (
            CertificateRevocationList.objects.filter(ca_id=ca.pk, shard=0)
            .order_by("-crl_number")
            .values("crl_number", "this_update", "next_update", "entry_count")
            .first()
        )
        oldest = (
            OCSPResponse.objects.filter(ca_id=ca.pk)
            .order_by("this_update")
            .values_list("this_update", flat=True)
            .first()
        )
        expired_response = OCSPResponse.objects.filter(ca_id=ca.pk, next_update__lte=now).exists()
        responder_until = responders.get(ca.pk)
        out.append(
            RevocationHealth(
                ca=ca,
                crl_number=crl["crl_number"] if crl else None,
                crl_this_update=crl["this_update"] if crl else None,
                crl_next_update=crl["next_update"] if crl else None,
                crl_entries=crl["entry_count"] if crl else None,
                crl_pending=ca.pk in pending,
                crl_stale=crl is None or crl["next_update"] <= now,
                ocsp_responder_not_after=responder_until,
                ocsp_oldest=oldest,
                ocsp_stale=expired_response or responder_until is None or responder_until <= now,
            )
        )
    return out
