"""Threat-monitor alerts on the console dashboard: auditors see them, administrators acknowledge
and resolve them (audited), and nobody else can."""

from __future__ import annotations

import pytest
from django.db import transaction

from pki import audit
from pki.models import Alert, AlertKind, AlertState, AuditEvent
from pki.transparency.monitor import MonitorPolicy, run_monitor

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert() -> Alert:
    with transaction.atomic():
        audit.record(
            action="issuance.refused_blocked_key",
            actor="mallory (token x1)",
            object_type="key",
            object_id="aa",
            scope="ca:1",
        )
    raised = run_monitor(policy=MonitorPolicy(), deliver=False).raised
    # The real clock runs here: other signals (a CA near expiry, say) may be raised beside it.
    return next(a for a in raised if a.kind == AlertKind.BLOCKED_KEY)


def test_administrators_acknowledge_and_resolve_alerts_on_the_dashboard(c_admin, c_auditor, alert):
    page = c_auditor.client.get("/console/").content.decode()
    assert "tried 1 time(s) in 10 minutes to certify a blocked key" in page
    assert "Acknowledge" not in page  # auditors see, administrators act
    assert c_auditor.client.post(f"/console/alerts/{alert.pk}/acknowledge/").status_code == 403
    assert "Acknowledge" in c_admin.client.get("/console/").content.decode()
    c_admin.client.post(f"/console/alerts/{alert.pk}/acknowledge/")
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == (AlertState.ACKNOWLEDGED, "alice")
    # A resolution needs a note: without one nothing changes.
    response = c_admin.client.post(f"/console/alerts/{alert.pk}/resolve/", {"note": ""}, follow=True)
    assert "needs a note" in response.content.decode()
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    c_admin.client.post(f"/console/alerts/{alert.pk}/resolve/", {"note": "revoked the token"})
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    actions = set(AuditEvent.objects.filter(object_type="alert").values_list("action", flat=True))
    assert actions == {"alert.raised", "alert.acknowledged", "alert.resolved"}
    assert "certify a blocked key" not in c_admin.client.get("/console/").content.decode()
