"""Shared fixtures: CAs made through the real use cases, profiles, committed keys and CSRs."""

from __future__ import annotations

import datetime as dt
import uuid
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
def ocsp_env(settings: Any) -> Iterator[str]:
    """OCSP with a private Redis key prefix and eager Celery tasks; removes its Redis keys after."""
    import redis

    from pki import conf, ocsp
    from web.celery import app

    prefix = f"kmi-test-ocsp-{uuid.uuid4().hex[:12]}"
    redis_url = settings.REDIS_URL
    # One pre-signing task per issued certificate (no debounce), run inline.
    settings.KMI_OCSP = {**settings.KMI_OCSP, "REDIS_PREFIX": prefix, "PRESIGN_DELAY_SECONDS": 0}
    conf.reset()
    ocsp.reset_caches()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield prefix
    finally:
        app.conf.task_always_eager = eager
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
        conf.reset()
        ocsp.reset_caches()


@pytest.fixture(autouse=True, scope="session")
def _celery_memory_broker() -> Iterator[None]:
    """Tasks the domain signals enqueue during tests go to an in-memory broker, never to Redis."""
    from web.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = "memory://"
    try:
        yield
    finally:
        app.conf.broker_url = previous
