"""Serve KMI over TLS for device-enrollment tests: gunicorn with KMI's client-certificate worker,
a server certificate from the test CA, and a reader's shell for the manual's commands."""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from django.core.management import call_command

from pki.models import CertificateAuthority
from tests.support.processes import BIN, ROOT, Proc, base_env, free_port_in, start, wait_for, worker_ports

PORTS = worker_ports(22400, 22479)


@dataclass(frozen=True)
class Served:
    """A running KMI, the environment a reader's shell gets and its working directory."""

    url: str
    env: dict[str, str]
    work: Path
    web: Proc


def _answers(url: str, context: ssl.SSLContext, proc: Proc) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"gunicorn exited:\n{proc.output()}")
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5, context=context):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextmanager
def serve_kmi(
    tmp_path: Path, *, root: CertificateAuthority, issuing: CertificateAuthority, tls: bool
) -> Iterator[Served]:
    """gunicorn serving KMI (over TLS with ``web.tls_worker`` when ``tls``), ``root.pem`` in the
    reader's directory, ``KMI_URL`` in its environment."""
    work = tmp_path / "reader"
    work.mkdir()
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    (work / "root.pem").write_bytes(root.x509_certificate().public_bytes(Encoding.PEM))
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=True)
    port = free_port_in(*PORTS)
    cmd = [str(BIN / "gunicorn"), "web.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    context = ssl.create_default_context(cafile=str(work / "root.pem"))
    if tls:
        call_command(
            "issue_service_cert", "--name", "localhost", "--out", str(tmp_path / "tls"), "--ca", issuing.name
        )
        client_cas = tmp_path / "client-cas.pem"
        client_cas.write_bytes(
            root.x509_certificate().public_bytes(Encoding.PEM)
            + issuing.x509_certificate().public_bytes(Encoding.PEM)
        )
        cmd += [
            "--worker-class",
            "web.tls_worker.ClientCertWorker",
            "--certfile",
            str(tmp_path / "tls" / "localhost.crt"),
            "--keyfile",
            str(tmp_path / "tls" / "localhost.key"),
            "--cert-reqs",
            "1",
            "--ca-certs",
            str(client_cas),
        ]
    url = f"{'https' if tls else 'http'}://localhost:{port}"
    web = start(cmd, env, tmp_path / "web.log")
    try:
        wait_for(lambda: _answers(url, context, web), timeout=60, what="gunicorn")
        shell = {**env, "KMI_URL": url, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        yield Served(url=url, env=shell, work=work, web=web)
    finally:
        web.stop()


def administrator_token(username: str = "alice") -> str:
    """An administrator and an API token of theirs: the ``TOKEN`` of the manual's API blocks."""
    from django.contrib.auth.models import User

    from pki.access import grant_role
    from pki.models import Role
    from pki.tokens import create_token

    user = User.objects.create_user(username=username, password="unused-password-123")
    grant_role(user=user, role=Role.ADMINISTRATOR, actor="test")
    return create_token(user=user, actor="test").text
