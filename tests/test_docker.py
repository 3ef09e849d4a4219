"""The deployment files are valid: docker-compose accepts the compose file, hadolint the Dockerfile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _compose_config() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMI_HOSTNAME": "kmi.example.test"}
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
    assert {"postgres", "redis", "web", "worker", "beat", "signer", "proxy", "init", "migrate"} <= set(
        services
    )
    with_kek = {name for name, s in services.items() if "KMI_KEK_FILE" in (s.get("environment") or {})}
    assert with_kek == {"signer", "init"}  # init signs the first CAs and KMI's own TLS certificate
    assert {s["source"] if isinstance(s, dict) else s for s in services["signer"]["secrets"]} >= {"kmi_kek"}
    assert "kmi_kek" not in str(services["web"].get("secrets"))
    # The signing channel's MAC key: every process that sends or runs signing jobs holds it.
    for name in ("web", "worker", "beat", "signer"):
        assert services[name]["environment"]["KMI_SIGNING_SECRET_FILE"] == "/run/secrets/kmi_signing_secret"
        assert "kmi_signing_secret" in str(services[name].get("secrets")), name
    assert services["web"]["environment"]["KMI_SIGNING"] == "worker"
    assert services["web"]["command"] == ["web"]
    assert sorted(
        str(p.get("target", p)) if isinstance(p, dict) else p.split(":")[-1]
        for p in services["proxy"]["ports"]
    ) == ["443", "80"]


def test_compose_file_refuses_to_start_without_the_required_settings():
    env = {k: v for k, v in os.environ.items() if k != "KMI_HOSTNAME"}
    done = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=DOCKER,
    )
    assert done.returncode != 0
    assert "set KMI_HOSTNAME" in done.stderr


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


def test_nginx_passes_est_client_certificates_only_with_the_proxy_secret(services):
    conf = (DOCKER / "nginx.conf.template").read_text()
    est = conf.split("location /.well-known/est/ {", 1)[1].split("\n    }", 1)[0]
    # Set by nginx on every EST request: a client-sent header of that name never reaches KMI.
    assert "proxy_set_header X-KMI-Client-Cert $ssl_client_escaped_cert;" in est
    assert 'proxy_set_header X-KMI-Proxy-Secret "${KMI_EST_PROXY_SECRET}";' in est
    assert "proxy_set_header Host $host;" in est  # a location's own headers replace the inherited ones
    assert "ssl_verify_client optional_no_ca;" in conf
    assert conf.count("location /scep/") == 2  # plain HTTP and HTTPS
    # The same secret file for KMI's web process and for nginx, which writes it into its config.
    assert services["web"]["environment"]["KMI_EST_PROXY_SECRET_FILE"] == "/run/secrets/est_proxy_secret"
    assert "est_proxy_secret" in _secrets(services["web"])
    assert "est_proxy_secret" in _secrets(services["proxy"])
    # ($$ in the file: compose's escape for a literal $; its config output may keep either form)
    assert 'cat /run/secrets/est_proxy_secret)"' in services["proxy"]["command"][-1]
    assert services["proxy"]["command"][-1].startswith("export KMI_EST_PROXY_SECRET=")
    assert "file: ./secrets/est_proxy_secret" in (DOCKER / "compose.yaml").read_text()


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
    # The transparency log `kmi` made once, before KMI's own certificate (which it then holds).
    from pki.models import Certificate, PendingLeaf, TransparencyLog

    assert TransparencyLog.objects.filter(name="kmi").count() == 1
    service = Certificate.objects.get(serial=format(chain[0].serial_number, "x"))
    assert PendingLeaf.objects.filter(certificate_id=service.pk).exists()


# --- issue 10 §5: the deployment keeps its boundaries -----------------------------------------------
MOZILLA_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
KMI_SERVICES = ("migrate", "init", "web", "worker", "signer", "beat")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    done = _compose_config()
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def _secrets(service: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets") or []}


def test_secrets_are_files_never_environment_values(services):
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|KEK|DATABASE_URL|REDIS_URL", re.IGNORECASE)
    credentials_in_url = re.compile(r"://[^/@\s]*:[^/@\s]+@")
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if secretish.search(key) and key != "KMI_REQUIRE_SECRET_KEY":
                assert key.endswith("_FILE"), (name, key)
                assert str(value).startswith("/run/secrets/"), (name, key)
            assert not credentials_in_url.search(str(value or "")), (name, key)
    for name in KMI_SERVICES:
        env = services[name]["environment"]
        # Each file a service is told to read is a secret it is given.
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert value.removeprefix("/run/secrets/") in _secrets(services[name]), (name, key)


def test_every_container_drops_its_capabilities_and_privileges(services):
    for name, service in services.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in (service.get("security_opt") or []), name
    for name in KMI_SERVICES:
        assert "cap_add" not in services[name], name  # KMI itself needs no capability at all


def test_nginx_cannot_reach_the_database_or_redis(services):
    networks = {name: set(service.get("networks") or {}) for name, service in services.items()}
    assert networks["proxy"] == {"edge"}
    assert {name for name, nets in networks.items() if "edge" in nets} == {"proxy", "web"}
    assert networks["postgres"] == {"backend"}
    assert networks["redis"] == {"backend"}
    assert networks["signer"] == {"backend"}  # holds the KEK and the audit key: no route out
    done = _compose_config()
    assert yaml.safe_load(done.stdout)["networks"]["backend"].get("internal") is True


def test_redis_asks_for_a_password(services):
    command = services["redis"]["command"]
    assert command[command.index("--aclfile") + 1] == "/run/secrets/redis_acl"
    assert "redis_acl" in _secrets(services["redis"])
    for name in KMI_SERVICES:
        assert services[name]["environment"]["REDIS_URL_FILE"] == "/run/secrets/redis_url", name
    example = (DOCKER / "..").resolve() / "docs" / "guide" / "deployment.md"
    assert "user default on nopass -@all +ping" in example.read_text()  # the ACL the guide writes


def test_the_application_connects_as_the_non_owner_role(services):
    for name in KMI_SERVICES:
        wanted = "database_owner_url" if name == "migrate" else "database_url"
        assert services[name]["environment"]["DATABASE_URL_FILE"] == f"/run/secrets/{wanted}", name
        assert ("database_owner_url" in _secrets(services[name])) == (name == "migrate"), name
    assert services["init"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    postgres = services["postgres"]
    assert "POSTGRES_USER" not in postgres["environment"]  # the superuser is `postgres`, unused by KMI
    assert any(str(v).endswith("postgres-init:/docker-entrypoint-initdb.d:ro") for v in postgres["volumes"])
    script = (DOCKER / "postgres-init" / "10-kmi-roles.sh").read_text()
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in script
    assert 'CREATE DATABASE :"db" OWNER :"owner"' in script
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    assert "REVOKE UPDATE, DELETE, TRUNCATE ON pki_auditevent, pki_auditcheckpoint" in entrypoint


def test_the_role_script_makes_an_application_role_that_cannot_rewrite_the_trail(tmp_path):
    """docker/postgres-init/10-kmi-roles.sh on the test server, under names of this test."""
    import psycopg

    base = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    parts = urlsplit(base)
    tag = f"{os.getpid()}"
    names = {
        "KMI_DB": f"kmi_docker_{tag}",
        "KMI_OWNER": f"kmi_docker_owner_{tag}",
        "KMI_APP": f"kmi_docker_app_{tag}",
    }
    (tmp_path / "kmi_owner_password").write_text("owner-pw\n")
    (tmp_path / "kmi_app_password").write_text("app-pw\n")
    admin_url = urlunsplit(parts._replace(path="/postgres"))

    def drop(admin: psycopg.Connection) -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{names["KMI_DB"]}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{names["KMI_APP"]}"')
        admin.execute(f'DROP ROLE IF EXISTS "{names["KMI_OWNER"]}"')

    with psycopg.connect(admin_url, autocommit=True) as admin:
        drop(admin)
        try:
            env = {
                **os.environ,
                **names,
                "KMI_SECRETS": str(tmp_path),
                "PGHOST": parts.hostname or "127.0.0.1",
                "PGPORT": str(parts.port or 5432),
                "POSTGRES_USER": parts.username or "postgres",
            }
            done = subprocess.run(
                ["sh", str(DOCKER / "postgres-init" / "10-kmi-roles.sh")],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            host = parts.netloc.rsplit("@", 1)[-1]
            owner_url = f"postgres://{names['KMI_OWNER']}:owner-pw@{host}/{names['KMI_DB']}"
            app_url = f"postgres://{names['KMI_APP']}:app-pw@{host}/{names['KMI_DB']}"
            with psycopg.connect(owner_url, autocommit=True) as owner:
                owner.execute("CREATE TABLE pki_auditevent (id int, actor text)")
            with psycopg.connect(app_url, autocommit=True) as app:
                app.execute("INSERT INTO pki_auditevent VALUES (1, 'alice')")  # default privileges
                row = app.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
                assert row == (False,)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute("ALTER TABLE pki_auditevent DISABLE TRIGGER ALL")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute("CREATE TABLE mine (id int)")
        finally:
            drop(admin)


def test_nginx_tls_is_mozilla_intermediate_and_metrics_need_a_token(services):
    conf = (DOCKER / "nginx.conf.template").read_text()
    https_server = conf.split("listen 443 ssl;", 1)[1]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https_server
    assert f"ssl_ciphers {MOZILLA_INTERMEDIATE_CIPHERS};" in https_server
    assert "ssl_prefer_server_ciphers off;" in https_server
    assert "ssl_session_tickets off;" in https_server
    assert 'Strict-Transport-Security "max-age=63072000"' in https_server
    web = services["web"]
    assert web["environment"]["KMI_METRICS_TOKEN_FILE"] == "/run/secrets/metrics_token"
    assert "metrics_token" in _secrets(web)
