"""The HTTP repository on a live server, used as relying parties use it.

``openssl verify -crl_download`` follows the certificate's CRL Distribution Point; headless
Chromium (Debian's, driven by Playwright) downloads the CRL and CA certificate from the URLs in a
certificate and, trusting only the KMI root (NSS database in a temporary $HOME), loads an HTTPS
page whose server sends the leaf alone, fetching the intermediate through AIA caIssuers.

Playwright's sync API runs an event loop, and Django refuses ORM calls while one runs: every test
does its database work before it starts the browser.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from django.core.signals import request_started
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.crl import publish_crl
from pki.enrollment import sign_csr
from pki.models import Certificate, CertificateAuthority, Profile
from pki.revocation import revoke_certificate
from pki.x509.names import parse_subject
from tests.conftest import FIXTURES, make_csr
from tests.support.chromium import CHROMIUM_FLAGS

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PORTS = range(18200, 18300)  # this area's port range


@dataclass
class LivePKI:
    """A root → issuing chain and a leaf whose CDP and AIA point at the live server."""

    url: str
    root: CertificateAuthority
    issuing: CertificateAuthority
    leaf: Certificate
    crl_der: bytes
    requested: list[str]

    def pem_files(self, directory: Path) -> dict[str, Path]:
        """Write root.pem, issuing.pem and leaf.pem; return their paths."""
        out = {}
        for label, cert in (
            ("root", self.root.x509_certificate()),
            ("issuing", self.issuing.x509_certificate()),
            ("leaf", self.leaf.x509()),
        ):
            out[label] = directory / f"{label}.pem"
            out[label].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return out


@pytest.fixture
def live_pki(live_server: Any, kmi_settings: Any) -> Iterator[LivePKI]:
    kmi_settings(BASE_URL=live_server.url)
    root = create_root_ca(name="root", subject=parse_subject("CN=KMI Live Root,O=KMI"), actor="t")
    issuing = create_intermediate_ca(
        name="issuing",
        parent=root,
        subject=parse_subject("CN=KMI Live Issuing,O=KMI"),
        path_length=0,
        actor="t",
    )
    leaf = sign_csr(
        ca=issuing,
        profile=Profile.objects.get(name="tls-server"),
        csr=make_csr("ec-p256", sans=[x509.DNSName("www.example.test")]),
        actor="t",
    )
    crl = publish_crl(ca=issuing, actor="t")
    publish_crl(ca=root, actor="t")
    requested: list[str] = []

    def log_request(*, environ: dict[str, Any], **_: Any) -> None:
        requested.append(environ.get("PATH_INFO", ""))

    request_started.connect(log_request, dispatch_uid="live-pki-log")
    yield LivePKI(live_server.url, root, issuing, leaf, bytes(crl.der), requested)
    request_started.disconnect(dispatch_uid="live-pki-log")


def _openssl_verify_download(files: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl", "verify", "-crl_download", "-crl_check",
            "-CAfile", str(files["root"]), "-untrusted", str(files["issuing"]), str(files["leaf"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def test_openssl_downloads_the_crl_named_in_the_cdp(live_pki, tmp_path):
    files = live_pki.pem_files(tmp_path)
    cdp = live_pki.leaf.x509().extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"{live_pki.url}/crl/issuing.crl"
    good = _openssl_verify_download(files)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "/crl/issuing.crl" in live_pki.requested
    revoke_certificate(certificate=live_pki.leaf, reason="keyCompromise", actor="t")
    publish_crl(ca=live_pki.issuing, actor="t")
    bad = _openssl_verify_download(files)
    assert bad.returncode != 0
    assert "error 23" in bad.stdout + bad.stderr


@contextlib.contextmanager
def _browser(home: Path, extra_args: list[str] | None = None) -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=CHROMIUM_FLAGS + (extra_args or []),
            env={**os.environ, "HOME": str(home)},
        )
        try:
            yield browser
        finally:
            browser.close()


def _download(browser: Any, url: str, directory: Path) -> tuple[str, bytes]:
    page = browser.new_page(accept_downloads=True)
    # The navigation "fails" because it became a download.
    with page.expect_download() as info, contextlib.suppress(PlaywrightError):
        page.goto(url)
    download = info.value
    target = directory / "download.bin"
    download.save_as(target)
    page.close()
    return download.suggested_filename, target.read_bytes()


def test_browser_downloads_the_crl_and_ca_certificate_from_the_certificate_urls(live_pki, tmp_path):
    leaf = live_pki.leaf.x509()
    crl_url = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ca_issuers = next(
        d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
    )
    issuing_der = bytes(live_pki.issuing.own_certificate().der)
    with _browser(tmp_path) as browser:
        crl_name, crl_bytes = _download(browser, crl_url, tmp_path)
        cer_name, cer_bytes = _download(browser, ca_issuers, tmp_path)
    assert (crl_name, crl_bytes) == ("issuing.crl", live_pki.crl_der)
    assert (cer_name, cer_bytes) == ("issuing.cer", issuing_der)


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
    raise RuntimeError("no free port in 18200-18299")


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>KMI TLS</title><p id=ok>served with a KMI certificate</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _tls_server(cert_pem: Path, key_pem: Path) -> Iterator[int]:
    port = _free_port()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_pem, key_pem)  # the leaf alone: no intermediate
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


def test_https_page_with_the_leaf_alone_is_secure_when_the_root_is_trusted(live_pki, tmp_path):
    files = live_pki.pem_files(tmp_path)
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, timeout=30)
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "KMI root", "-i", str(files["root"])],
        check=True,
        timeout=30,
    )
    states: list[str] = []
    with (
        _tls_server(files["leaf"], FIXTURES / "keys" / "ec-p256.pem") as port,
        _browser(home, ["--host-resolver-rules=MAP www.example.test 127.0.0.1"]) as browser,
    ):
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
    assert "secure" in states
    assert "/ca/issuing.cer" in live_pki.requested  # the intermediate came through AIA caIssuers
