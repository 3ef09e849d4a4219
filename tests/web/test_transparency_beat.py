"""Real Celery beat and worker: the transparency tick puts a committed certificate under a signed
tree head within the log's MMD, and the threat monitor raises one alert for a burst, however
many times beat runs it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.db import transaction

from pki import audit
from pki.clock import utcnow
from pki.models import Alert, AlertKind, LogEntry, SignedTreeHead
from pki.transparency.log import create_log
from tests.support.certs import issue
from tests.support.processes import base_env, start_beat, start_worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_beat_sequences_signs_and_monitors(issuing_ca, profile, tmp_path: Path):
    # Made a minute ago: its first tree head is old enough for the first tick to sign the next.
    log = create_log(name="kmi", actor="test", now=utcnow() - dt.timedelta(minutes=1))
    cert = issue(issuing_ca, profile)  # committed: its leaf is queued, not yet in any tree head
    assert not LogEntry.objects.filter(certificate=cert).exists()
    with transaction.atomic():
        for i in range(12):
            audit.record(
                action="acme.challenge.invalid",
                actor="acme:demo:prober",
                object_type="acmechallenge",
                object_id=str(i),
                scope="acme:1",
            )
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=True)
    env["KMI_TEST_BEAT_SECONDS"] = "2"
    env["KMI_TEST_BEAT_TASKS"] = "pki.signing.transparency_tick,pki.threat_monitor"
    worker = start_worker(env, tmp_path / "worker.log")
    beat = start_beat(env, tmp_path / "beat.log", tmp_path / "beat-schedule")
    try:

        def covered() -> bool:
            entry = LogEntry.objects.filter(log=log, certificate=cert).first()
            return (
                entry is not None
                and SignedTreeHead.objects.filter(log=log, tree_size__gt=entry.leaf_index).exists()
            )

        wait_for(covered, timeout=60, what="the certificate under a signed tree head (MMD 60 s)")
        wait_for(
            lambda: Alert.objects.filter(kind=AlertKind.CHALLENGE_FAILURES).exists(), timeout=60, what="alert"
        )
        wait_for(
            lambda: beat.output().count("Sending due task test-pki.threat_monitor") >= 3, what="monitor ticks"
        )
        wait_for(
            lambda: Alert.objects.get(kind=AlertKind.CHALLENGE_FAILURES).count >= 2,
            timeout=30,
            what="refresh",
        )
    finally:
        beat.stop()
        worker.stop()
    assert Alert.objects.filter(kind=AlertKind.CHALLENGE_FAILURES).count() == 1
    assert "Task pki.signing.transparency_tick" in worker.output()
    assert "Task pki.threat_monitor" in worker.output()
