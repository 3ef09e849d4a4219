"""The deployment files are valid: docker-compose accepts the compose file, hadolint the Dockerfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _compose_config() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMI_DB_PASSWORD": "test-password", "KMI_HOSTNAME": "kmi.example.test"}
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: apt-get install docker-compose (.ci/run does)"
    return subprocess.run(
        [compose, "-f", str(DOCKER / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=DOCKER,
    )


def test_compose_file_is_valid_and_only_the_signer_holds_the_kek():
    done = _compose_config()
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "signer", "proxy", "init"} <= set(services)
    with_kek = {name for name, s in services.items() if "KMI_KEK_FILE" in (s.get("environment") or {})}
    assert with_kek == {"signer", "init"}  # init signs the first CAs and KMI's own TLS certificate
    assert {s["source"] if isinstance(s, dict) else s for s in services["signer"]["secrets"]} >= {"kmi_kek"}
    assert "kmi_kek" not in str(services["web"].get("secrets"))
    assert services["web"]["environment"]["KMI_SIGNING"] == "worker"
    assert services["web"]["command"] == ["web"]
    assert sorted(
        str(p.get("target", p)) if isinstance(p, dict) else p.split(":")[-1]
        for p in services["proxy"]["ports"]
    ) == ["443", "80"]


def test_compose_file_refuses_to_start_without_the_required_settings():
    env = {k: v for k, v in os.environ.items() if k not in ("KMI_DB_PASSWORD", "KMI_HOSTNAME")}
    done = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=DOCKER,
    )
    assert done.returncode != 0
    assert "set KMI_DB_PASSWORD" in done.stderr or "set KMI_HOSTNAME" in done.stderr


def test_dockerfile_passes_hadolint():
    done = subprocess.run(
        [str(HADOLINT), str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_nginx_serves_repository_paths_over_http_and_the_rest_over_https():
    conf = (DOCKER / "nginx.conf.template").read_text()
    http_server, https_server = conf.split("listen 443 ssl;", 1)
    for path in ("location /crl/", "location /ca/", "location /ocsp"):
        assert path in http_server
    assert "return 301 https://" in http_server
    assert "ssl_certificate     /certs/${KMI_HOSTNAME}.crt;" in https_server
    assert "location = /metrics { return 404; }" in https_server


def test_nginx_passes_est_client_certificates_only_with_the_proxy_secret():
    conf = (DOCKER / "nginx.conf.template").read_text()
    est = conf.split("location /.well-known/est/ {", 1)[1].split("\n    }", 1)[0]
    # Set by nginx on every EST request: a client-sent header of that name never reaches KMI.
    assert "proxy_set_header X-KMI-Client-Cert $ssl_client_escaped_cert;" in est
    assert 'proxy_set_header X-KMI-Proxy-Secret "${KMI_EST_PROXY_SECRET}";' in est
    assert "proxy_set_header Host $host;" in est  # a location's own headers replace the inherited ones
    assert "ssl_verify_client optional_no_ca;" in conf
    assert conf.count("location /scep/") == 2  # plain HTTP and HTTPS
    compose = (DOCKER / "compose.yaml").read_text()
    # KMI and nginx; unset, KMI never trusts the header (EST then authenticates by code only).
    assert compose.count("KMI_EST_PROXY_SECRET: ${KMI_EST_PROXY_SECRET:-}") == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_init_role_creates_the_cas_once_and_issues_kmis_own_certificate(tmp_path):
    from cryptography import x509

    from pki.models import CertificateAuthority
    from tests.support.processes import TEST_KEK, base_env

    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=False)
    env.update(
        KMI_KEK_FILE=str(tmp_path / "kek"),
        KMI_SERVICE_CERT_NAMES="kmi.example.test",
        KMI_SERVICE_CERT_DIR=str(tmp_path / "certs"),
        KMI_ROOT_SUBJECT="CN=Example Root CA,O=Example",
        KMI_ISSUING_SUBJECT="CN=Example Issuing CA,O=Example",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # as /opt/kmi/bin in the image
    )
    (tmp_path / "kek").write_text(TEST_KEK + "\n")
    root = Path(__file__).resolve().parents[1]
    runs = [
        subprocess.run(
            ["sh", str(DOCKER / "entrypoint.sh"), "init"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        for _ in range(2)
    ]
    assert runs[0].returncode == 0, runs[0].stdout + runs[0].stderr
    assert runs[1].returncode == 0, runs[1].stdout + runs[1].stderr
    assert "issued: " in runs[0].stdout
    assert "current: " in runs[1].stdout
    assert sorted(CertificateAuthority.objects.values_list("name", flat=True)) == ["issuing", "root"]
    chain = x509.load_pem_x509_certificates((tmp_path / "certs" / "kmi.example.test.crt").read_bytes())
    assert chain[0].subject.rfc4514_string() == "CN=kmi.example.test"
    assert chain[1].subject.rfc4514_string() == "CN=Example Issuing CA,O=Example"
