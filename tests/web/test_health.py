"""/healthz answers ok while the database does (container health checks use it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok(client, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path  # WhiteNoise warns about a missing STATIC_ROOT otherwise
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def _on_an_hsm_this_process_cannot_reach(ca) -> None:
    """The CA's key lives in an HSM (backend alias pkcs11) this process has no settings for."""
    from pki.models import Key

    Key.objects.filter(pk=ca.key_id).update(backend="pkcs11")


def test_healthz_detail_reports_each_ca_key_backend(client, issuing_ca, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    healthy = client.get("/healthz?detail=1")
    assert healthy.status_code == 200
    assert healthy.json()["key_backends"] == [
        {"ca": "issuing", "backend": "encrypted", "ok": True},
        {"ca": "root", "backend": "encrypted", "ok": True},
    ]
    _on_an_hsm_this_process_cannot_reach(issuing_ca)
    broken = client.get("/healthz?detail=1")
    assert broken.status_code == 503
    body = broken.json()
    assert body["ok"] is False
    (issuing,) = [s for s in body["key_backends"] if s["ca"] == "issuing"]
    assert issuing == {
        "ca": "issuing",
        "backend": "pkcs11",
        "ok": False,
        "problem": "no key backend named 'pkcs11' is configured",
    }
    assert client.get("/healthz").status_code == 200  # the plain liveness check stays as it was


def test_an_unreachable_key_backend_is_a_metric_and_a_loud_start_up_log(client, issuing_ca, caplog):
    from pki.keys.health import log_unreachable_backends

    _on_an_hsm_this_process_cannot_reach(issuing_ca)
    text = client.get("/metrics").content.decode()
    assert 'kmi_ca_key_backend_up{backend="pkcs11",ca="issuing"} 0.0' in text
    assert 'kmi_ca_key_backend_up{backend="encrypted",ca="root"} 1.0' in text
    # Never published: its CRL age is the CA's age, so a CRL-age alert fires for it.
    assert 'kmi_crl_age_seconds{ca="issuing"}' in text
    failed = log_unreachable_backends()
    assert [s.ca for s in failed] == ["issuing"]
    assert any(
        r.levelname == "ERROR" and "CA issuing cannot sign here" in r.getMessage() for r in caplog.records
    )
