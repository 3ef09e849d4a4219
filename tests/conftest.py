"""Shared fixtures: CAs made through the real use cases, profiles, committed keys and CSRs."""

from __future__ import annotations

import datetime as dt
import http.server
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from django.db import connections
from pytest_django.plugin import blocking_manager_key, validate_django_db

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.models import CertificateAuthority, Profile
from pki.x509.names import parse_subject

FIXTURES = Path(__file__).parent / "fixtures"


def _is_long(item: pytest.Item) -> bool:
    return any(item.iter_markers("interop")) or any(item.iter_markers("slow"))


def _is_transactional(item: pytest.Item) -> bool:
    """A test that commits: pytest-django flushes every table when it ends, seeded rows included."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    if "transactional_db" in fixtures or "live_server" in fixtures:
        return True
    if marker is None:
        return False
    transaction, reset_sequences, *_ = validate_django_db(marker)
    return bool(transaction or reset_sequences)


def _run_order(item: pytest.Item) -> int:
    """Long tests first, then the rest in pytest-randomly's order.

    pytest-django runs transactional tests last because each flushes every table when it ends,
    seeded rows included; here the seeded rows are put back after each of them
    (``pytest_runtest_teardown``), so no order is needed for that, and pytest-xdist's worksteal
    may move any test to any worker.
    """
    return 0 if _is_long(item) else 1


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle and pytest-django's order
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests (marked ``interop`` or ``slow``) start first.

    pytest-xdist hands tests out in collection order: a minute-long runbook collected last keeps
    one worker busy after the others have run out of work. Started first, the long tests overlap
    while the short ones fill the gaps.
    """
    items.sort(key=_run_order)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """After a transactional test's flush, load the rows the migrations seeded (profiles, …)
    again, as pytest-django's ``serialized_rollback`` does, so any test can follow it."""
    result = yield
    # After the last test the test databases are gone (and the connection names the real one).
    if nextitem is not None and _is_transactional(item):
        with item.config.stash[blocking_manager_key].unblock():
            for connection in connections.all(initialized_only=True):
                contents = getattr(connection, "_test_serialized_contents", None)
                if contents:
                    connection.creation.deserialize_db_from_string(contents)
    return result


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


# --- revocation and CRLs -------------------------------------------------------------------------


@pytest.fixture
def kmi_settings(settings: Any) -> Iterator[Callable[..., None]]:
    """Override ``settings.KMI`` entries (e.g. ``CRL_DIR``) and reload PKI settings; undone after."""
    from pki import conf
    from pki.keys import registry

    original = settings.KMI

    def override(**values: Any) -> None:
        settings.KMI = {**settings.KMI, **values}
        conf.reset()
        registry.reset()

    yield override
    settings.KMI = original
    conf.reset()
    registry.reset()


def ca_from_key(
    name: str,
    key_name: str,
    *,
    parent: CertificateAuthority | None = None,
    validity_days: int = 365 * 30,
    now: dt.datetime = NOW,
) -> CertificateAuthority:
    """A CA whose key is a committed fixture key (RSA without generating one), stored encrypted."""
    import uuid

    from pki.keys import get_backend, key_type_of, signature_hash
    from pki.keys.base import issuer_public_key
    from pki.models import CAGeneration, Key, KeyState
    from pki.models.key import KeyPurpose
    from pki.recording import record_certificate
    from pki.x509.builders import ca_certificate_builder
    from pki.x509.csr import spki_der, spki_fingerprint
    from pki.x509.serials import random_serial

    backend = get_backend("encrypted")
    private = load_key(key_name)
    public = issuer_public_key(private.public_key())
    key_id = uuid.uuid4()
    handle = backend.store(key_id=key_id, private_key=private)  # type: ignore[attr-defined]
    key = Key.objects.create(
        id=key_id,
        key_type=key_type_of(public),
        purpose=KeyPurpose.CA,
        backend=backend.alias,
        handle=handle,
        public_key_der=spki_der(public),
        spki_sha256=spki_fingerprint(public),
        state=KeyState.ACTIVE,
        created_at=now,
        activated_at=now,
    )
    ca = CertificateAuthority.objects.create(name=name, key=key, parent=parent, created_at=now)
    signer = parent.key if parent is not None else key
    builder = ca_certificate_builder(
        subject=parse_subject(f"CN=KMI {name},O=KMI"),
        public_key=public,
        serial=random_serial(),
        not_before=now - dt.timedelta(minutes=1),
        not_after=now + dt.timedelta(days=validity_days),
        path_length=None,
        name_constraints=None,
        issuer=parent.x509_certificate() if parent is not None else None,
        issuer_ca_name=parent.repository_name if parent is not None else None,
    )
    cert = get_backend(signer.backend).sign_certificate(
        signer.handle, builder, signature_hash(signer.key_type)
    )
    ca.certificate = record_certificate(cert, ca=parent or ca, key=key, now=now)
    ca.save(update_fields=["certificate"])
    CAGeneration.objects.create(ca=ca, number=1, key=key, certificate=ca.certificate, created_at=now)
    return ca


@pytest.fixture
def fixture_ca(db: None) -> Callable[..., CertificateAuthority]:
    """Make a CA from a committed key: ``fixture_ca("rsa-root", "rsa-2048")``."""
    return ca_from_key


def kek_line(kek_id: str, seed: bytes) -> str:
    """A test KEK entry ``id:base64url`` whose 32 bytes derive from ``seed`` (never a real key)."""
    import base64
    import hashlib

    return f"{kek_id}:{base64.urlsafe_b64encode(hashlib.sha256(seed).digest()).decode()}"


@pytest.fixture
def use_keks(settings: Any) -> Iterator[Callable[..., None]]:
    """Reconfigure the KEKs (``use_keks(line, line2)``; the last is current) for one test."""
    from pki import conf
    from pki.keys import registry

    def apply(*lines: str) -> None:
        settings.KMI = {**settings.KMI, "KEK": ",".join(lines), "KEK_FILE": ""}
        conf.reset()
        registry.reset()

    yield apply
    # pytest-django restores settings after this; the caches then reload from the restored ones.
    conf.reset()
    registry.reset()


@pytest.fixture
def lifecycle_conf(settings: Any) -> Iterator[Callable[..., None]]:
    """Override ``settings.KMI_LIFECYCLE`` entries for one test: ``lifecycle_conf(SIGNING="worker")``."""
    from pki import conf

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
    app.conf.broker_url = "memory://localhost/"  # a host name: no kombu "No hostname" warning
    try:
        yield
    finally:
        app.conf.broker_url = previous


@pytest.fixture(scope="session", autouse=True)
def static_root_exists() -> None:
    """WhiteNoise warns (an error here) when STATIC_ROOT is missing; web tests need it to exist."""
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def redis_left_as_found() -> Iterator[None]:
    """What this test process wrote to the shared Redis under its own prefixes — ACME nonces, and
    the cache's (throttles, the threat monitor's per-minute counters, which would otherwise only
    expire) — is deleted when the session ends."""
    yield
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        cache_prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        patterns = [settings.KMI_ACME["NONCE_PREFIX"] + "*"] + ([f"{cache_prefix}:*"] if cache_prefix else [])
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            for pattern in patterns:
                keys = list(client.scan_iter(match=pattern, count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()


# --- web processes without key material (KMI_SIGNING=worker) ------------------------------------


@pytest.fixture
def without_kek(settings: Any, ocsp_env: str) -> Iterator[Callable[[], None]]:
    """Call it to make this process a web process with no KEK (``KMI_KEK`` and ``KMI_KEK_FILE``
    empty, key backends and OCSP caches reloaded); Celery stops being eager, so what it enqueues
    goes to the (in-memory) broker as from a web process. Undone after the test."""
    from pki import conf, ocsp
    from pki.keys import registry
    from web.celery import app

    original, eager = settings.KMI, app.conf.task_always_eager

    def apply() -> None:
        settings.KMI = {**settings.KMI, "KEK": "", "KEK_FILE": ""}
        conf.reset()
        registry.reset()  # a backend that unsealed keys before would still hold them in its cache
        ocsp.reset_caches()
        app.conf.task_always_eager = False

    yield apply
    settings.KMI = original
    app.conf.task_always_eager = eager
    conf.reset()
    registry.reset()
    ocsp.reset_caches()


@pytest.fixture
def private_key_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Handles of every private key the ``encrypted`` backend unseals (or tries to) from now on;
    the real method still runs."""
    from pki.keys.encrypted import EncryptedKeyBackend

    loads: list[str] = []
    unseal = EncryptedKeyBackend._private_key

    def recording(self: EncryptedKeyBackend, handle: str) -> CertificateIssuerPrivateKeyTypes:
        loads.append(handle)
        return unseal(self, handle)

    monkeypatch.setattr(EncryptedKeyBackend, "_private_key", recording)
    return loads


@pytest.fixture
def published_tasks() -> Iterator[list[tuple[str, str, Any]]]:
    """(task name, routing key, body) of every Celery task published to the broker meanwhile."""
    from celery.signals import after_task_publish

    published: list[tuple[str, str, Any]] = []

    def record(sender: str | None = None, routing_key: str = "", body: Any = None, **_: Any) -> None:
        published.append((str(sender), routing_key, body))

    after_task_publish.connect(record, weak=False)
    yield published
    after_task_publish.disconnect(record)


# --- transactional tests start from the migrated state --------------------------------------------


@pytest.fixture(autouse=True)
def _transactional_tests_start_clean(request: pytest.FixtureRequest) -> None:
    """A transactional test assumes an empty database, as Django's TransactionTestCase does.

    Rows another test's helper process committed after that test's own flush (a worker or server
    thread finishing late) were seen, rarely, under xdist; reset to the migrated state first and
    say so on stderr, instead of failing on "a CA named 'root' already exists".
    """
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
    if marker is not None and marker.kwargs.get("transaction"):
        transactional = True
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    from django.core.management import call_command
    from django.db import connection

    if not CertificateAuthority.objects.exists():
        return
    sys.stderr.write(f"{request.node.nodeid}: leftover rows from an earlier test; flushing first\n")
    call_command("flush", interactive=False, verbosity=0, allow_cascade=True)
    serialized = getattr(connection, "_test_serialized_contents", None)
    if serialized:
        connection.creation.deserialize_db_from_string(serialized)


@pytest.fixture(autouse=True)
def _no_throttle_counts_from_earlier_tests() -> None:
    """Throttle counts (in Redis) and the allowance a process holds (web.api.throttles._leases)
    are per user id, and ids are reused after a transactional test's flush: each test starts
    without any of this test process's."""
    import redis
    from django.conf import settings
    from django.core.cache import cache

    from web.api import throttles

    with throttles._leases_lock:
        throttles._leases.clear()
    pattern = cache.make_key("throttle_*")  # type: ignore[attr-defined]
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
