"""Chromium, trusting only the first root generation, accepts a server certificate of the new
generation when the server sends the link certificate (new root key certified by the old one).

Playwright's sync API runs an event loop, and Django refuses ORM calls while one runs: the test
does its database work before it starts the browser.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Error as PlaywrightError

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.enrollment import sign_csr
from pki.models import CAGeneration, Profile
from pki.rotation import rollover_ca
from pki.x509.names import parse_subject
from tests.conftest import FIXTURES, make_csr
from tests.interop.test_repository_live import _browser, _Hello

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PORTS = range(21700, 21800)  # this area's port range


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            return port
    raise RuntimeError("no free port in 21700-21799")


@contextlib.contextmanager
def _tls_server(chain_pem: Path, key_pem: Path) -> Iterator[int]:
    port = _free_port()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_pem, key_pem)  # the leaf, then what the server sends with it
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_old_root_trusts_a_new_generation_server_through_the_link_certificate(
    live_server: Any, kmi_settings: Any, tmp_path: Path
) -> None:
    kmi_settings(BASE_URL=live_server.url)  # AIA caIssuers of every certificate reach this server
    root = create_root_ca(name="root", subject=parse_subject("CN=KMI Rollover Root,O=KMI"), actor="t")
    issuing = create_intermediate_ca(
        name="issuing", parent=root, subject=parse_subject("CN=KMI Rollover Issuing,O=KMI"), actor="t"
    )
    old_root = root.x509_certificate()
    link = rollover_ca(ca=root, actor="t").link_from_previous
    assert link is not None
    root.refresh_from_db()
    issuing.refresh_from_db()
    rollover_ca(ca=issuing, actor="t")
    issuing.refresh_from_db()
    leaf = sign_csr(
        ca=issuing,
        profile=Profile.objects.get(name="tls-server"),
        csr=make_csr("ec-p256", sans=[x509.DNSName("www.example.test")]),
        actor="t",
    )
    assert leaf.issuer_generation == 2
    assert CAGeneration.objects.get(ca=issuing, number=2).certificate.issuer_generation == 2  # type: ignore[union-attr]
    with_link = _pem(tmp_path / "with-link.pem", leaf.x509(), issuing.x509_certificate(), link.x509())
    without_link = _pem(tmp_path / "without-link.pem", leaf.x509(), issuing.x509_certificate())

    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, timeout=30)
    old_root_pem = _pem(tmp_path / "old-root.pem", old_root)
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "KMI old root", "-i", str(old_root_pem)],
        check=True,
        timeout=30,
    )
    key = FIXTURES / "keys" / "ec-p256.pem"
    states: list[str] = []
    with _browser(home, ["--host-resolver-rules=MAP www.example.test 127.0.0.1"]) as browser:
        with _tls_server(with_link, key) as port:
            page = browser.new_page()
            cdp = page.context.new_cdp_session(page)
            cdp.on(
                "Security.visibleSecurityStateChanged",
                lambda event: states.append(event["visibleSecurityState"]["securityState"]),
            )
            cdp.send("Security.enable")
            response = page.goto(f"https://www.example.test:{port}/")  # raises on net::ERR_CERT_*
            assert response is not None
            assert response.ok
            assert page.inner_text("#ok") == "served with a KMI certificate"
            for _ in range(50):
                if "secure" in states:
                    break
                page.wait_for_timeout(100)
            page.close()
        assert "secure" in states
        # Without the link the new generation leads only to the new root, which this browser
        # does not trust (its caIssuers URL serves the new root's self-signed certificate).
        with _tls_server(without_link, key) as port:
            page = browser.new_context().new_page()
            with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
                page.goto(f"https://www.example.test:{port}/")
