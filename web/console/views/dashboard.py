"""The dashboard: the queue, expiries, issuance, CRL and OCSP health, workers and the audit trail."""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from pki import health
from pki.access import Action, can, visible_audit_events, visible_requests
from pki.clock import utcnow
from pki.conf import lifecycle_settings
from pki.models import AuditVerification, RequestState
from pki.transparency.monitor import open_alerts
from web.console.auth import console_view
from web.console.charts import bar_chart


@console_view
def dashboard(request: HttpRequest) -> HttpResponse:
    """``/console/``: every figure read from a summary or an index, none counted per view."""
    now = utcnow()
    figures = health.figures_for(request.user, now=now)
    base = figures.as_of or now
    week_labels = [f"{base + dt.timedelta(weeks=i):%d %b}" for i in range(health.EXPIRY_WEEKS)]
    day_labels = [
        f"{base - dt.timedelta(days=health.ISSUED_DAYS - 1 - i):%d %b}" for i in range(health.ISSUED_DAYS)
    ]
    summary_age = (now - figures.as_of).total_seconds() if figures.as_of else None
    stale_after = 3 * lifecycle_settings().summary_seconds
    reads_audit = can(request.user, Action.VIEW_AUDIT)
    context = {
        "now": now,
        "figures": figures.figures,
        "as_of": figures.as_of,
        "summary_stale": summary_age is None or summary_age > stale_after or bool(figures.missing_cas),
        "pending": visible_requests(request.user).filter(state=RequestState.PENDING).count(),
        "expiry_chart": bar_chart(
            "Certificates expiring per week, next 26 weeks", figures.figures.expiry_weeks, week_labels
        ),
        "issued_chart": bar_chart(
            "Certificates issued per day, last 30 days", figures.figures.issued_days, day_labels
        ),
        "revocation": health.revocation_health(now=now),
        "queues": health.queue_health(now=now),
        "verification": AuditVerification.objects.first() if reads_audit else None,
        "events": list(visible_audit_events(request.user).order_by("-id")[:10]) if reads_audit else None,
        # Threat-monitor alerts: seen by auditors and administrators, acted on by administrators.
        "alerts": list(open_alerts()[:50]) if reads_audit else None,
        "manages_alerts": can(request.user, Action.MANAGE_CA),
    }
    return render(request, "console/dashboard.html", context)
