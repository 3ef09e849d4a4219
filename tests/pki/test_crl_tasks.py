"""The Celery adapters of CRL publication: the beat entry and the due-publication task."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from pki.models import CertificateRevocationList
from pki.tasks import BEAT_SCHEDULE, publish_due_crls
from tests.conftest import NOW

pytestmark = pytest.mark.django_db


def test_beat_checks_for_due_crls_at_half_the_revocation_delay():
    entry = BEAT_SCHEDULE["publish-due-crls"]
    assert entry["task"] == publish_due_crls.name
    assert entry["schedule"] == 30.0  # KMI_CRL_REVOCATION_DELAY defaults to 60 s


def test_task_publishes_missing_crls_once_even_when_run_twice(issuing_ca):
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        first = publish_due_crls.apply().get()
        second = publish_due_crls.apply().get()
    assert sorted(n for _, _, n in first["published"]) == [1, 1]
    assert second == {"published": []}
    assert CertificateRevocationList.objects.count() == 2
