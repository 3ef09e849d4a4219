"""``bootstrap_demo`` and the ACME defaults ``runstack`` (``make run``) gives the demo."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from pki.acme.endpoints import check_identifier_allowed
from pki.acme.exceptions import RejectedIdentifier
from pki.models import AcmeEndpoint, AuditEvent, CertificateAuthority, TransparencyLog
from pki.x509.names import SAN
from web.management.commands.runstack import acme_demo_environment, certbot_command

pytestmark = pytest.mark.django_db


def _run() -> str:
    out = io.StringIO()
    call_command("bootstrap_demo", stdout=out)
    return out.getvalue()


def test_bootstrap_creates_the_demo_cas_and_acme_endpoint_once():
    first = _run()
    assert "created ACME endpoint demo: http://pki.example.test/acme/demo/directory" in first
    assert "created transparency log kmi: http://pki.example.test/ct/kmi/log.json" in first
    assert TransparencyLog.objects.get().feeds_issuance  # every issuance feeds it (issue 15)
    endpoint = AcmeEndpoint.objects.select_related("ca", "profile").get()
    assert (endpoint.name, endpoint.ca.name, endpoint.profile.name) == ("demo", "issuing", "tls-server")
    assert endpoint.eab_required is False
    assert endpoint.enabled is True
    for name in ("www.example.test", "a.b.example.test", "example.test", "localhost", "app.localhost"):
        check_identifier_allowed(endpoint, SAN("dns", name))
    check_identifier_allowed(endpoint, SAN("ip", "127.0.0.1"))
    for san in (SAN("dns", "www.example.com"), SAN("dns", "test"), SAN("ip", "10.0.0.1")):
        with pytest.raises(RejectedIdentifier):
            check_identifier_allowed(endpoint, san)
    events = AuditEvent.objects.count()

    second = _run()
    assert "ACME endpoint present: demo" in second
    assert "CAs present" in second
    assert "transparency log present: kmi" in second
    assert AcmeEndpoint.objects.count() == 1
    assert CertificateAuthority.objects.count() == 2
    assert AuditEvent.objects.count() == events


def test_bootstrap_makes_no_endpoint_without_an_issuing_ca(root_ca):
    # CAs of the operator's own (no "issuing"): no endpoint, and no error.
    assert "no CA named issuing" in _run()
    assert not AcmeEndpoint.objects.exists()


def test_make_run_fills_only_the_demo_settings_that_are_unset():
    env = {"KMI_ACME_HTTP01_PORT": "5002", "KMI_ALLOWED_DOMAINS": "corp.internal"}
    assert acme_demo_environment(env) == ["KMI_ACME_HOSTS"]
    assert env["KMI_ALLOWED_DOMAINS"] == "corp.internal"
    assert env["KMI_ACME_HTTP01_PORT"] == "5002"
    assert "**.example.test=127.0.0.1" in env["KMI_ACME_HOSTS"].split(",")
    empty: dict[str, str] = {}
    assert acme_demo_environment(empty) == ["KMI_ACME_HTTP01_PORT", "KMI_ACME_HOSTS", "KMI_ALLOWED_DOMAINS"]
    assert empty["KMI_ACME_HTTP01_PORT"] == "8080"
    assert empty["KMI_ALLOWED_DOMAINS"] == "example.test,localhost"  # the demo's names


def test_printed_certbot_line_uses_the_validation_port_and_a_private_state_dir():
    line = certbot_command("http://127.0.0.1:8000/acme/demo/directory", "8080", Path("/tmp/kmi/certbot"))
    assert "certonly --standalone --http-01-port 8080 --http-01-address 127.0.0.1" in line
    assert "--server http://127.0.0.1:8000/acme/demo/directory -d www.example.test" in line
    assert "--config-dir /tmp/kmi/certbot --work-dir /tmp/kmi/certbot --logs-dir /tmp/kmi/certbot" in line


def test_bootstrap_creates_the_demo_est_and_scep_labels_and_make_run_prints_working_lines(tmp_path):
    import base64
    import re

    from django.test import Client

    from pki.models import EstLabel, ScepLabel
    from tests.conftest import make_csr
    from web.devices_demo import client_lines

    first = _run()
    assert "created EST label demo (CA issuing, profile tls-client)" in first
    assert "created SCEP label demo (CA issuing, profile tls-client)" in first
    assert "EST label present: demo" in _run()
    assert (EstLabel.objects.count(), ScepLabel.objects.count()) == (1, 1)
    lines = client_lines("http://127.0.0.1:8000", tmp_path)
    est, scep = lines.splitlines()
    assert "scepclient -server-url http://127.0.0.1:8000/scep/demo -challenge " in scep
    assert "-ca-fingerprint " in scep
    user, password = re.search(r"-u (\S+):(\S+) ", est).groups()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    der = base64.b64decode(b"".join(make_csr(subject="CN=device-1.example.test").splitlines()[1:-1]))
    response = Client().post(
        "/.well-known/est/demo/simpleenroll",
        base64.encodebytes(der),
        content_type="application/pkcs10",
        HTTP_AUTHORIZATION=f"Basic {token}",
    )
    assert response.status_code == 200, response.content
