"""/healthz answers ok while the database does (container health checks use it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok(client, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path  # WhiteNoise warns about a missing STATIC_ROOT otherwise
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
