"""Shared fixtures: CAs made through the real use cases, profiles, committed keys and CSRs."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.models import CertificateAuthority, Profile
from pki.x509.names import parse_subject

FIXTURES = Path(__file__).parent / "fixtures"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def load_key(name: str) -> CertificateIssuerPrivateKeyTypes:
    """Load a committed private key from tests/fixtures/keys/NAME.pem."""
    return serialization.load_pem_private_key(  # type: ignore[return-value]
        (FIXTURES / "keys" / f"{name}.pem").read_bytes(), None
    )


def make_csr(
    key_name: str = "ec-p256",
    *,
    subject: str = "CN=www.example.test",
    sans: list[x509.GeneralName] | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
) -> bytes:
    """Build a PEM CSR signed by a committed key (no key generation in tests)."""
    key = load_key(key_name)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        parse_subject(subject) if subject else x509.Name([])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for ext, critical in extensions or []:
        builder = builder.add_extension(ext, critical=critical)
    algorithm = None if key_name in {"ed25519", "ed448"} else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


@pytest.fixture
def csr_factory() -> Callable[..., bytes]:
    """Build CSRs from committed keys."""
    return make_csr


@pytest.fixture
def root_ca(db: None) -> CertificateAuthority:
    """A root CA created through ``create_root_ca``."""
    return create_root_ca(
        name="root",
        subject=parse_subject("CN=KMI Test Root,O=KMI"),
        key_type="ec-p256",
        actor="test",
        now=NOW,
    )


@pytest.fixture
def issuing_ca(root_ca: CertificateAuthority) -> CertificateAuthority:
    """An issuing CA (path length 0) under ``root_ca``."""
    return create_intermediate_ca(
        name="issuing",
        parent=root_ca,
        subject=parse_subject("CN=KMI Issuing CA,O=KMI"),
        key_type="ec-p256",
        path_length=0,
        actor="test",
        now=NOW,
    )


@pytest.fixture
def profile(db: None) -> Callable[[str], Profile]:
    """Look up a seeded profile by name."""
    return lambda name: Profile.objects.get(name=name)


@pytest.fixture
def lifecycle_conf(settings: Any) -> Iterator[Callable[..., None]]:
    """Override ``settings.KMI_LIFECYCLE`` entries for one test: ``lifecycle_conf(SIGNING="worker")``."""
    from pki import lifecycle_conf as conf

    def override(**values: object) -> None:
        settings.KMI_LIFECYCLE = {**settings.KMI_LIFECYCLE, **values}
        conf.reset()

    yield override
    conf.reset()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 recording every POST (lower-cased headers, body)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A live webhook endpoint that records what KMI posts to it."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
