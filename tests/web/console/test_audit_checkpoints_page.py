"""The console's audit page says which signed checkpoint the trail was last anchored by."""

from __future__ import annotations

import pytest

from pki.audit_checkpoints import make_checkpoint
from tests.conftest import NOW

pytestmark = pytest.mark.django_db


def test_the_audit_page_shows_the_latest_signed_checkpoint(c_auditor, issuing_ca, settings, tmp_path):
    settings.KMI_AUDIT_CHECKPOINT_PATH = str(tmp_path / "checkpoints.jsonl")
    page = c_auditor.client.get("/console/audit/").content.decode()
    assert "No signed checkpoint yet" in page
    row = make_checkpoint(actor="test", now=NOW)
    page = c_auditor.client.get("/console/audit/").content.decode()
    assert "Latest signed checkpoint: number 1," in page
    assert f"{row.events} events in {len(row.lanes)} chains" in page
