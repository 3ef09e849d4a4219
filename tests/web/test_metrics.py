"""/metrics: issuance, signing errors, protocol responses, queue lengths, CRL/OCSP guards."""

from __future__ import annotations

import io
import re
import uuid

import pytest
import redis
from django.conf import settings as django_settings

from pki.exceptions import NotFound
from pki.issuance import submit_request
from pki.models import Certificate
from pki.signing import run_signing
from tests.conftest import make_csr
from web.metrics import _model

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _static_root(settings, tmp_path):
    # WhiteNoise warns (an error here) when STATIC_ROOT does not exist before collectstatic.
    settings.STATIC_ROOT = tmp_path


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name{labels}`` in Prometheus text, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name:
            got = ",".join(sorted(p for p in (m.group(2) or "").split(",") if p))
            if got == want:
                return float(m.group(3))
    return None


def test_metrics_report_issuance_per_ca_and_signing_latency_and_errors(client, issuing_ca, profile):
    before = client.get("/metrics").content.decode()
    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    run_signing("issue_request", request_id=request.pk, actor="t")
    with pytest.raises(NotFound):
        run_signing("issue_request", request_id=999999, actor="t")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    issued = Certificate.objects.filter(ca=issuing_ca).count()
    assert _value(text, "kmi_certificates_issued_total", ca="issuing") == issued
    count = "kmi_issuance_seconds_count"
    assert (_value(text, count, placement="inprocess") or 0) - (
        _value(before, count, placement="inprocess") or 0
    ) == 1
    errors = "kmi_signing_errors_total"
    labels = {"use_case": "issue_request", "code": "not_found"}
    assert (_value(text, errors, **labels) or 0) - (_value(before, errors, **labels) or 0) == 1


def test_metrics_count_responses_of_public_endpoints(client):
    def served() -> float:
        text = client.get("/metrics").content.decode()
        return _value(text, "kmi_http_responses_total", endpoint="crl", status="404") or 0

    start = served()
    client.get("/crl/no-such-ca.crl")
    client.get("/crl/no-such-ca.crl")
    assert served() - start == 2


def test_raw_ocsp_responder_counts_its_responses(client):
    from web.wsgi import application

    def served() -> float:
        text = client.get("/metrics").content.decode()
        # An unknown CA gets HTTP 200 with the OCSP status "unauthorized" (RFC 6960 §2.3).
        return _value(text, "kmi_http_responses_total", endpoint="ocsp", status="200") or 0

    start = served()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/ocsp/no-such-ca/MAA=",
        "HTTP_HOST": "pki.example.test",  # the raw path checks it against ALLOWED_HOSTS
        "wsgi.input": io.BytesIO(),
    }
    body = b"".join(application(environ, lambda status, headers: None))
    assert body  # a DER OCSPResponse
    assert served() - start == 1


def test_queue_lengths_are_read_from_redis(client, settings):
    prefix = f"kmi-test-{uuid.uuid4().hex[:8]}:"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        **django_settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "global_keyprefix": prefix,
    }
    r = redis.Redis.from_url(settings.REDIS_URL)
    try:
        r.rpush(f"{prefix}signing", "a", "b", "c")
        text = client.get("/metrics").content.decode()
    finally:
        r.delete(f"{prefix}signing")
        r.close()
    assert _value(text, "kmi_queue_length", queue="signing") == 3
    assert _value(text, "kmi_queue_length", queue="celery") == 0


def test_crl_and_ocsp_families_are_always_described(client):
    text = client.get("/metrics").content.decode()
    for family in ("kmi_crl_age_seconds", "kmi_crl_size_bytes", "kmi_ocsp_oldest_response_age_seconds"):
        assert f"# HELP {family} " in text


def test_models_are_used_only_when_present_with_the_fields_needed():
    assert _model("Certificate", "not_after", "der") is Certificate
    assert _model("Certificate", "no_such_field") is None
    assert _model("NoSuchModel") is None


def test_metrics_token_is_required_when_configured(client, lifecycle_conf):
    lifecycle_conf(METRICS_TOKEN="s3cret-token")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_gunicorn_workers_counts_are_summed_in_multiprocess_mode(tmp_path):
    import urllib.error
    import urllib.request

    from tests.support.processes import BIN, base_env, free_port_in, start, wait_for

    port = free_port_in(18600, 18699)
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=False)
    (tmp_path / "prom").mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    web = start(
        [str(BIN / "gunicorn"), "web.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "3"],
        env,
        tmp_path / "gunicorn.log",
    )

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    try:
        wait_for(lambda: get("/healthz")[0] == 200, timeout=60, what="gunicorn")
        for _ in range(12):  # spread over the three workers by the kernel's accept queue
            assert get("/crl/none.crl")[0] == 404
        status, text = get("/metrics")
    finally:
        web.stop()
    assert status == 200, web.output()
    assert _value(text, "kmi_http_responses_total", endpoint="crl", status="404") == 12
    assert list((tmp_path / "prom").glob("counter_*.db"))  # counted through the shared folder


def test_each_ca_generation_has_its_own_crl_series(client, issuing_ca):
    from pki.crl import publish_due_crls
    from pki.rotation import rollover_ca

    rollover_ca(ca=issuing_ca, actor="t")
    publish_due_crls(actor="t")
    text = client.get("/metrics").content.decode()
    for name in ("issuing", "issuing.g2", "root"):
        assert _value(text, "kmi_crl_entries", ca=name) == 0
