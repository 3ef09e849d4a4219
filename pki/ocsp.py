"""OCSP responder (RFC 6960, RFC 5019): delegated responders, pre-signed and live responses.

Each CA has a delegated responder: a key KMI generates for the purpose and a short-lived
certificate from the CA under the ``ocsp-signing`` profile (id-kp-OCSPSigning,
id-pkix-ocsp-nocheck). Responses are signed with the responder key only, so a CA key never
signs OCSP and web processes never need one.

Celery pre-signs a response for every unexpired certificate and both CertID hashes (SHA-1,
SHA-256), keeps it in Redis (when ``REDIS_URL`` is set) and in the ``OCSPResponse`` table, and
re-signs at half-life and right after a revocation. ``answer`` serves a plain request from
Redis with no database query, falls back to the table, and signs live (with the responder
key) for a nonce, several requests in one, or a miss.

A process that cannot sign (``KMI_SIGNING=worker``, or no KEK to unseal the responder key)
never tries to: it answers a nonce request with the pre-signed response (RFC 8954 §2.1 lets a
responder leave the nonce out), a miss with ``tryLater`` while it asks the signing queue to
pre-sign that certificate, and what only a live signature could answer with ``tryLater``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.db.models import Exists, OuterRef
from redis.exceptions import RedisError

from pki import audit
from pki.authorities import ensure_can_sign
from pki.clock import resolve
from pki.conf import ocsp_settings
from pki.exceptions import PKIError
from pki.generations import answering_generations, current_generation, ensure_generation_can_sign
from pki.issuance import issue_for_key
from pki.keys import get_backend, signature_hash
from pki.keystore import generate_key
from pki.lifecycle_conf import lifecycle_settings
from pki.models.authority import CAGeneration, CAState, CertificateAuthority
from pki.models.certificate import Certificate, RevocationReason
from pki.models.key import KeyPurpose, KeyState, KeyType
from pki.models.ocsp import OCSPResponder, OCSPResponse
from pki.models.profile import Profile
from pki.signals import ocsp_response_missing
from pki.x509 import ocsp_der
from pki.x509.ocsp_der import (
    INTEGER,
    OCTET_STRING,
    SEQUENCE,
    MalformedRequest,
    ParsedRequest,
    ResponseStatus,
    SingleStatus,
    error_response,
    tlv,
)
from pki.x509.serials import serial_hex

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

RESPONDER_PROFILE = "ocsp-signing"
PRESIGNED_HASHES = ("sha1", "sha256")  # RFC 5019 §2.1.1 clients send SHA-1; newer ones SHA-256
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_HASH_OIDS = {name: oid for oid, name in ocsp_der.HASH_OIDS.items()}
_REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}
# Signature AlgorithmIdentifiers by responder key family and hash (RFC 5758, RFC 4055, RFC 8410).
_SIGNATURE_OIDS = {
    ("ec", "sha256"): "1.2.840.10045.4.3.2",
    ("ec", "sha384"): "1.2.840.10045.4.3.3",
    ("ec", "sha512"): "1.2.840.10045.4.3.4",
    ("rsa", "sha256"): "1.2.840.113549.1.1.11",
    ("rsa", "sha384"): "1.2.840.113549.1.1.12",
    ("rsa", "sha512"): "1.2.840.113549.1.1.13",
    ("ed25519", None): "1.3.101.112",
    ("ed448", None): "1.3.101.113",
}
INDEX_RELOAD_SECONDS = 5.0  # an unknown issuer reloads the CA index at most this often
RESPONDER_RELOAD_SECONDS = 60.0  # live signing picks up a renewed responder within this
REDIS_RETRY_SECONDS = 5.0  # after a Redis error, the database answers alone this long
MISS_PRESIGN_INTERVAL_SECONDS = 10.0  # a process asks for a missing response at most this often
PRESIGN_BATCH = 500
_STORE_HEADER = struct.Struct(">qq")  # thisUpdate, nextUpdate (Unix seconds) before the DER


# --- responder certificates -------------------------------------------------------------------


def responder_subject(ca: CertificateAuthority) -> x509.Name:
    """The responder's subject: the CA's subject with ``CN=<CA CN> OCSP Responder``."""
    ca_subject = ca.x509_certificate().subject
    cns = ca_subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(cns[0].value) if cns else ca.name
    # RFC 5280 Appendix A: ub-common-name is 64 characters.
    cn = f"{base[: 64 - len(' OCSP Responder')]} OCSP Responder"
    rdns = [rdn for rdn in ca_subject.rdns if rdn.get_attributes_for_oid(NameOID.COMMON_NAME) == []]
    return x509.Name([*rdns, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])])


def _needs_renewal(responder: OCSPResponder, now: dt.datetime, fraction: float) -> bool:
    cert = responder.certificate
    if cert.revoked_at is not None or responder.key.state != KeyState.ACTIVE:
        return True
    lifetime = cert.not_after - cert.not_before
    return cert.not_after - now < lifetime * fraction


def ensure_ocsp_responder(
    *,
    ca: CertificateAuthority,
    actor: str,
    generation: CAGeneration | None = None,
    now: dt.datetime | None = None,
) -> OCSPResponder:
    """Return the delegated OCSP responder of a CA generation (the current one by default),
    renewing it when it is missing, revoked or due.

    Renewal (a new key and certificate, the old key deactivated) happens once less than
    ``KMI_OCSP_RESPONDER_RENEW_FRACTION`` of the certificate's validity is left. The responder
    certificate is signed by that generation's key: after a rollover the previous key keeps
    certifying its own responder for what it issued.
    """
    now = resolve(now)
    conf = ocsp_settings()
    with transaction.atomic():
        # One renewal per CA at a time: concurrent workers wait here, then see the new responder.
        ca = (
            CertificateAuthority.objects.select_for_update(of=("self",))
            .select_related("certificate", "key")
            .get(pk=ca.pk)
        )
        number = ca.generation if generation is None else generation.number
        current = (
            OCSPResponder.objects.select_related("certificate", "key")
            .filter(ca=ca, generation=number)
            .first()
        )
        if current is not None and not _needs_renewal(current, now, conf.responder_renew_fraction):
            return current
        if number == ca.generation:
            signing_generation = None
            ensure_can_sign(ca, now=now)
        else:
            assert generation is not None
            generation.ca = ca
            signing_generation = generation
            ensure_generation_can_sign(generation, now=now)
        key = generate_key(
            key_type=conf.responder_key_type,
            purpose=KeyPurpose.OCSP,
            actor=actor,
            scope=f"ca:{ca.pk}",
            now=now,
        )
        cert = issue_for_key(
            ca=ca,
            profile=Profile.objects.get(name=RESPONDER_PROFILE),
            subject=responder_subject(ca),
            key=key,
            actor=actor,
            validity_days=conf.responder_validity_days,
            generation=signing_generation,
            now=now,
        )
        if current is None:
            responder = OCSPResponder.objects.create(
                ca=ca, generation=number, certificate=cert, key=key, updated_at=now
            )
        else:
            old_key = current.key
            if old_key.state == KeyState.ACTIVE:
                # The old key signs nothing more; its responses stay valid until their nextUpdate.
                old_key.state = KeyState.DEACTIVATED
                old_key.deactivated_at = now
                old_key.save(update_fields=["state", "deactivated_at"])
            responder = current
            responder.certificate, responder.key, responder.updated_at = cert, key, now
            responder.save(update_fields=["certificate", "key", "updated_at"])
        audit.record(
            action="ocsp.responder_issued",
            actor=actor,
            obj=responder,
            details={
                "ca": ca.name,
                "generation": number,
                "serial": cert.serial,
                "not_after": cert.not_after.isoformat(),
                "replaces": current.certificate.serial if current is not None else None,
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return responder


# --- signing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """What signing with a responder needs, loaded once (no private key material here)."""

    ca_id: int
    generation: int
    backend: str
    handle: str
    hash_algorithm: hashes.HashAlgorithm | None
    signature_algorithm: bytes  # AlgorithmIdentifier DER
    key_hash: bytes  # RFC 6960 §4.2.1 KeyHash: SHA-1 of the responder's public key bits
    certificate_der: bytes
    not_after: dt.datetime

    @classmethod
    def of(cls, responder: OCSPResponder) -> Signer:
        """Describe how to sign with ``responder``."""
        key = responder.key
        algorithm = signature_hash(key.key_type)
        kt = KeyType(key.key_type)
        family = "ec" if kt.startswith("ec-") else "rsa" if kt.startswith("rsa-") else kt.value
        oid = _SIGNATURE_OIDS[(family, algorithm.name if algorithm is not None else None)]
        return cls(
            ca_id=responder.ca_id,
            generation=responder.generation,
            backend=key.backend,
            handle=key.handle,
            hash_algorithm=algorithm,
            signature_algorithm=ocsp_der.algorithm_identifier(oid, null_parameters=family == "rsa"),
            key_hash=hashlib.sha1(ocsp_der.bit_string_content(bytes(key.public_key_der))).digest(),  # noqa: S324
            certificate_der=bytes(responder.certificate.der),
            not_after=responder.certificate.not_after,
        )


@dataclass(frozen=True)
class SignedResponse:
    """A signed OCSPResponse and the validity window its caching headers come from."""

    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime


def build_response(
    *,
    signer: Signer,
    singles: Sequence[SingleStatus],
    now: dt.datetime,
    nonce: bytes | None = None,
    validity: dt.timedelta | None = None,
) -> SignedResponse:
    """Sign a successful OCSPResponse for ``singles`` with the responder behind ``signer``."""
    if not singles:
        raise ValueError("an OCSP response answers at least one CertID")
    this_update = now.replace(microsecond=0)
    next_update = this_update + (
        validity if validity is not None else dt.timedelta(seconds=ocsp_settings().response_validity_seconds)
    )
    # cryptography accepts nextUpdate before thisUpdate; RFC 6960 §4.2.2.1 does not.
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate")
    encoded = [ocsp_der.single_response(s, this_update=this_update, next_update=next_update) for s in singles]
    tbs = ocsp_der.response_data(
        responder_key_hash=signer.key_hash, produced_at=this_update, singles=encoded, nonce=nonce
    )
    signature = get_backend(signer.backend).sign_data(signer.handle, tbs, signer.hash_algorithm)
    der = ocsp_der.ocsp_response(
        tbs_response_data=tbs,
        signature_algorithm=signer.signature_algorithm,
        signature=signature,
        certificates=[signer.certificate_der],
    )
    return SignedResponse(der=der, this_update=this_update, next_update=next_update)


def single_status(
    cert_id_der: bytes, revoked_at: dt.datetime | None, reason: str | None, *, known: bool = True
) -> SingleStatus:
    """The status of one certificate (``known`` False: KMI never issued this serial)."""
    if not known:
        return SingleStatus(cert_id_der=cert_id_der, status="unknown")
    if revoked_at is None:
        return SingleStatus(cert_id_der=cert_id_der, status="good")
    code = _REASON_CODES.get(RevocationReason(reason), 0) if reason else 0
    # RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent.
    return SingleStatus(
        cert_id_der=cert_id_der,
        status="revoked",
        revocation_time=revoked_at,
        reason_code=code or None,
    )


# --- issuers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """A CA generation as OCSP requests name it: by the hashes of its subject and public key.

    ``name`` is the generation's repository name (the last segment of its OCSP URL).
    """

    ca_id: int
    generation: int
    name: str
    name_hashes: dict[str, bytes]
    key_hashes: dict[str, bytes]

    @classmethod
    def of(cls, ca: CertificateAuthority | CAGeneration) -> Issuer:
        """Compute every supported CertID hash of a CA's current generation (or of ``generation``)."""
        generation = current_generation(ca) if isinstance(ca, CertificateAuthority) else ca
        cert = generation.x509_certificate()
        name_der = cert.subject.public_bytes()
        key_bits = ocsp_der.bit_string_content(
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(
            ca_id=generation.ca_id,
            generation=generation.number,
            name=generation.repository_name,
            name_hashes={h: f(name_der).digest() for h, f in _HASHES.items()},
            key_hashes={h: f(key_bits).digest() for h, f in _HASHES.items()},
        )

    def cert_id(self, serial: int, algorithm: str) -> bytes:
        """The DER CertID of ``serial`` under this issuer (hash AlgorithmIdentifier with NULL)."""
        return tlv(
            SEQUENCE,
            ocsp_der.algorithm_identifier(_HASH_OIDS[algorithm], null_parameters=True)
            + tlv(OCTET_STRING, self.name_hashes[algorithm])
            + tlv(OCTET_STRING, self.key_hashes[algorithm])
            + tlv(INTEGER, serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)),
        )


class IssuerIndex:
    """Per-process map from CA names and CertID issuer hashes to CAs, reloaded on a miss."""

    def __init__(self) -> None:
        self._by_name: dict[str, Issuer] = {}
        self._by_hash: dict[tuple[str, bytes, bytes], Issuer] = {}
        self._loaded = -INDEX_RELOAD_SECONDS
        self._lock = threading.Lock()

    def reload(self) -> None:
        """Read every generation of every CA with a certificate that still answers for what it issued."""
        issuers = [
            Issuer.of(generation)
            for ca in CertificateAuthority.objects.select_related("certificate", "key").filter(
                certificate__isnull=False
            )
            for generation in answering_generations(ca)
        ]
        with self._lock:
            self._by_name = {i.name: i for i in issuers}
            self._by_hash = {
                (alg, i.name_hashes[alg], i.key_hashes[alg]): i for i in issuers for alg in _HASHES
            }
            self._loaded = time.monotonic()

    def clear(self) -> None:
        """Forget every CA (the next lookup reloads)."""
        with self._lock:
            self._by_name, self._by_hash = {}, {}
            self._loaded = -INDEX_RELOAD_SECONDS

    def _maybe_reload(self) -> bool:
        if time.monotonic() - self._loaded < INDEX_RELOAD_SECONDS:
            return False
        self.reload()
        return True

    def by_name(self, name: str) -> Issuer | None:
        """The CA named ``name`` in the URL, if KMI has it."""
        hit = self._by_name.get(name)
        if hit is None and self._maybe_reload():
            hit = self._by_name.get(name)
        return hit

    def by_cert_id(self, cert_id: ocsp_der.CertID) -> Issuer | None:
        """The CA a CertID names by its issuer name and key hashes, if KMI has it."""
        key = (cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        hit = self._by_hash.get(key)
        if hit is None and self._maybe_reload():
            hit = self._by_hash.get(key)
        return hit


class SignerCache:
    """Per-process cache of each CA generation's responder (reloaded every minute and before it
    expires)."""

    def __init__(self) -> None:
        self._signers: dict[tuple[int, int], tuple[float, Signer]] = {}

    def get(self, ca_id: int, now: dt.datetime, generation: int = 1) -> Signer | None:
        """The signer of the current responder of CA ``ca_id``'s ``generation``, or None when it
        has none (yet)."""
        hit = self._signers.get((ca_id, generation))
        fresh = hit is not None and time.monotonic() - hit[0] < RESPONDER_RELOAD_SECONDS
        if hit is not None and fresh and hit[1].not_after > now:
            return hit[1]
        responder = (
            OCSPResponder.objects.select_related("certificate", "key")
            .filter(ca_id=ca_id, generation=generation)
            .first()
        )
        if responder is None or responder.key.state != KeyState.ACTIVE:
            return None
        if responder.certificate.not_after <= now:
            return None
        signer = Signer.of(responder)
        self._signers[(ca_id, generation)] = (time.monotonic(), signer)
        return signer

    def clear(self) -> None:
        """Forget every cached responder."""
        self._signers.clear()


# --- storage ----------------------------------------------------------------------------------


class ResponseStore:
    """Pre-signed responses: Redis (when configured) in front of the ``OCSPResponse`` table."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._client_url = ""
        self._down_until = 0.0

    def _failed(self, what: str) -> None:
        # After a failure, leave Redis alone for a few seconds: no timeout and no traceback per
        # request while it is down; the database answers meanwhile.
        self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning(
            "OCSP: Redis %s failed; using the database for %ss", what, REDIS_RETRY_SECONDS, exc_info=True
        )

    def client(self) -> redis.Redis | None:
        """The Redis client of this process, or None without ``REDIS_URL`` (or while it is down)."""
        conf = ocsp_settings()
        if not conf.redis_url or time.monotonic() < self._down_until:
            return None
        if self._client is None or self._client_url != conf.redis_url:
            import redis as redis_lib

            self._client = redis_lib.Redis.from_url(
                conf.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._client_url = conf.redis_url
        return self._client

    @staticmethod
    def key(ca_id: int, serial: str, algorithm: str) -> str:
        """The Redis key of a response: prefix, CA, serial and CertID hash algorithm."""
        return f"{ocsp_settings().redis_prefix}:{ca_id}:{serial}:{algorithm}"

    def get_cached(self, ca_id: int, serial: str, algorithm: str) -> SignedResponse | None:
        """The response from Redis, or None (a miss, no Redis, or Redis down)."""
        client = self.client()
        if client is None:
            return None
        try:
            raw = client.get(self.key(ca_id, serial, algorithm))
        except (RedisError, OSError):  # a Redis outage must fall back to the database, never fail
            self._failed("GET")
            return None
        if not isinstance(raw, bytes) or len(raw) <= _STORE_HEADER.size:
            return None
        this_update, next_update = _STORE_HEADER.unpack_from(raw)
        return SignedResponse(
            der=raw[_STORE_HEADER.size :],
            this_update=dt.datetime.fromtimestamp(this_update, dt.UTC),
            next_update=dt.datetime.fromtimestamp(next_update, dt.UTC),
        )

    def get_stored(self, ca_id: int, serial: str, algorithm: str, now: dt.datetime) -> SignedResponse | None:
        """The durable copy from the database (and put it back into Redis), or None."""
        row = (
            OCSPResponse.objects.current(now)
            .filter(ca_id=ca_id, serial=serial, hash_algorithm=algorithm)
            .values_list("der", "this_update", "next_update")
            .first()
        )
        if row is None:
            return None
        found = SignedResponse(der=bytes(row[0]), this_update=row[1], next_update=row[2])
        # NX: a re-signed response written meanwhile by a worker always wins over this copy.
        self._put_redis([(ca_id, serial, algorithm, found)], now=now, only_new=True)
        return found

    def _put_redis(
        self,
        items: Iterable[tuple[int, str, str, SignedResponse]],
        *,
        now: dt.datetime,
        only_new: bool = False,
    ) -> None:
        client = self.client()
        if client is None:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                for ca_id, serial, algorithm, resp in items:
                    ttl = int((resp.next_update - now).total_seconds())
                    if ttl <= 0:
                        continue
                    header = _STORE_HEADER.pack(
                        int(resp.this_update.timestamp()), int(resp.next_update.timestamp())
                    )
                    pipe.set(self.key(ca_id, serial, algorithm), header + resp.der, ex=ttl, nx=only_new)
                pipe.execute()
        except (RedisError, OSError):  # the database copy is durable; Redis is a cache in front
            self._failed("SET")

    def put(
        self, ca_id: int, rows: Sequence[tuple[int, str, str, str, SignedResponse]], *, now: dt.datetime
    ) -> None:
        """Store (certificate id, serial, algorithm, revocation reason, response) rows: database
        first, then Redis."""
        OCSPResponse.objects.bulk_create(
            [
                OCSPResponse(
                    ca_id=ca_id,
                    certificate_id=cert_pk,
                    serial=serial,
                    hash_algorithm=algorithm,
                    revocation_reason=reason,
                    der=resp.der,
                    produced_at=resp.this_update,
                    this_update=resp.this_update,
                    next_update=resp.next_update,
                )
                for cert_pk, serial, algorithm, reason, resp in rows
            ],
            update_conflicts=True,
            unique_fields=["ca", "serial", "hash_algorithm"],
            update_fields=[
                "certificate",
                "revocation_reason",
                "der",
                "produced_at",
                "this_update",
                "next_update",
            ],
        )
        self._put_redis(((ca_id, s, a, r) for _, s, a, _, r in rows), now=now)

    def delete(self, keys: Iterable[tuple[int, str, str]]) -> None:
        """Remove responses from Redis (the database rows are deleted by the caller)."""
        client = self.client()
        names = [self.key(*k) for k in keys]
        if client is None or not names:
            return
        try:
            client.delete(*names)
        except (RedisError, OSError):  # expired keys also leave Redis by their TTL
            self._failed("DELETE")


class LocalCache:
    """A per-process micro-cache in front of Redis: a response read less than
    ``local_cache_seconds`` ago is served again without a round trip. It bounds how stale an
    answer can be after a re-signing to that many seconds (0 turns it off)."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str, str], tuple[float, SignedResponse]] = {}

    def get(self, key: tuple[int, str, str]) -> SignedResponse | None:
        """The response read within the last ``local_cache_seconds``, or None."""
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[int, str, str], response: SignedResponse, seconds: float) -> None:
        """Remember ``response`` for ``seconds``."""
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # cheap and bounded; the next reads refill from Redis
        self._entries[key] = (time.monotonic() + seconds, response)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


class MissedResponses:
    """Certificates this process asked the signing queue to pre-sign, and until when it waits
    before asking again: a burst of requests for one missing response sends one message."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._until: dict[int, float] = {}
        self._lock = threading.Lock()

    def ask(self, *, ca_id: int, certificate_id: int) -> bool:
        """Ask for the certificate's responses to be pre-signed, unless asked for recently."""
        now = time.monotonic()
        with self._lock:
            if self._until.get(certificate_id, 0.0) > now:
                return False
            if len(self._until) >= self.MAX_ENTRIES:
                self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[certificate_id] = now + MISS_PRESIGN_INTERVAL_SECONDS
        # The receiver (pki.tasks) enqueues pki.ocsp_presign on the signing queue.
        ocsp_response_missing.send(sender=MissedResponses, certificate_ids=[certificate_id], ca_ids=[ca_id])
        return True

    def clear(self) -> None:
        """Forget every request."""
        with self._lock:
            self._until.clear()


ISSUERS = IssuerIndex()
SIGNERS = SignerCache()
STORE = ResponseStore()
LOCAL = LocalCache()
MISSES = MissedResponses()


def reset_caches() -> None:
    """Forget this process's CA index, responders and Redis client (tests, settings changes)."""
    ISSUERS.clear()
    SIGNERS.clear()
    LOCAL.clear()
    MISSES.clear()
    STORE._client = None
    STORE._down_until = 0.0


# --- pre-signing --------------------------------------------------------------------------------


def presign_responses(
    *,
    ca: CertificateAuthority,
    actor: str,
    certificate_ids: Sequence[int] | None = None,
    from_certificate_id: int | None = None,
    stale_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Sign and store SHA-1 and SHA-256 responses for the CA's unexpired certificates.

    Not audited one by one: responses are derived data, re-signed every half hour; the events
    they reflect (issuance, revocation, responder certificates) are audited where they happen.

    ``certificate_ids`` limits it to those certificates, ``from_certificate_id`` to those with
    that id or a later one that have no response yet, ``stale_before`` to certificates whose
    stored response was signed before that time (or never). Returns how many certificates.
    Each generation of the CA answers for what it issued, with its own responder.
    """
    now = resolve(now)
    presign = functools.partial(
        _presign_generation,
        actor=actor,
        certificate_ids=certificate_ids,
        from_certificate_id=from_certificate_id,
        stale_before=stale_before,
        now=now,
    )
    done = 0
    for generation in answering_generations(ca):
        if generation.number != ca.generation:
            # A previous generation answers only while it has something to answer for; a key
            # it cannot use any more must not stop the current generation's responses.
            if not Certificate.objects.filter(
                ca_id=ca.pk, issuer_generation=generation.number, not_after__gt=now
            ).exists():
                continue
            try:
                done += presign(generation)
            except PKIError as exc:
                log.warning("OCSP: generation %s of CA %s cannot sign: %s", generation.number, ca.name, exc)
            continue
        done += presign(generation)
    return done


def _presign_generation(
    generation: CAGeneration,
    *,
    actor: str,
    certificate_ids: Sequence[int] | None,
    from_certificate_id: int | None,
    stale_before: dt.datetime | None,
    now: dt.datetime,
) -> int:
    ca = generation.ca
    responder = ensure_ocsp_responder(ca=ca, actor=actor, generation=generation, now=now)
    signer = Signer.of(responder)
    issuer = Issuer.of(generation)
    certs = Certificate.objects.filter(ca_id=ca.pk, issuer_generation=generation.number, not_after__gt=now)
    if certificate_ids is not None:
        certs = certs.filter(pk__in=list(certificate_ids))
    if from_certificate_id is not None:
        certs = certs.filter(pk__gte=from_certificate_id).exclude(
            Exists(OCSPResponse.objects.filter(certificate_id=OuterRef("pk")))
        )
    if stale_before is not None:
        # Fresh and still telling the truth: a status change whose signal was lost (broker down,
        # worker killed) is caught here too.
        current = OCSPResponse.objects.filter(
            certificate_id=OuterRef("pk"),
            hash_algorithm=PRESIGNED_HASHES[0],
            this_update__gte=stale_before,
            revocation_reason=OuterRef("revocation_reason"),
        )
        certs = certs.exclude(Exists(current))
    done = 0
    batch: list[tuple[int, str, str, str, SignedResponse]] = []
    rows = certs.order_by("pk").values_list("pk", "serial", "revoked_at", "revocation_reason")
    for pk, serial, revoked_at, reason in rows.iterator(chunk_size=PRESIGN_BATCH):
        serial_int = int(serial, 16)
        for algorithm in PRESIGNED_HASHES:
            status = single_status(issuer.cert_id(serial_int, algorithm), revoked_at, reason)
            signed = build_response(signer=signer, singles=[status], now=now)
            batch.append((pk, serial, algorithm, reason if revoked_at is not None else "", signed))
        done += 1
        if len(batch) >= PRESIGN_BATCH:
            STORE.put(ca.pk, batch, now=now)
            batch = []
    if batch:
        STORE.put(ca.pk, batch, now=now)
    return done


def refresh_responses(*, actor: str, now: dt.datetime | None = None) -> dict[str, int]:
    """Renew responders, re-sign stale or outdated responses, and drop expired ones (the beat job).

    A response is re-signed when it is past half its validity or when the certificate's status
    changed after it was signed. Returns the number of certificates re-signed per CA name.
    """
    now = resolve(now)
    half = dt.timedelta(seconds=ocsp_settings().response_validity_seconds / 2)
    signed: dict[str, int] = {}
    for ca in CertificateAuthority.objects.filter(certificate__isnull=False).exclude(state=CAState.DISABLED):
        try:
            signed[ca.name] = presign_responses(ca=ca, actor=actor, stale_before=now - half, now=now)
        except PKIError as exc:  # e.g. an expired CA: it cannot renew its responder
            log.warning("OCSP: cannot pre-sign responses of CA %s: %s", ca.name, exc)
        except Exception:  # one CA that fails must not stop the others
            log.exception("OCSP: cannot pre-sign responses of CA %s", ca.name)
    expired = OCSPResponse.objects.filter(next_update__lte=now)
    STORE.delete(expired.values_list("ca_id", "serial", "hash_algorithm"))
    expired.delete()
    return signed


# --- answering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An encoded OCSPResponse and, when it may be cached (RFC 5019 §6), its validity window."""

    der: bytes
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None

    @property
    def cacheable(self) -> bool:
        """True for a successful response without a nonce."""
        return self.next_update is not None


MALFORMED = Answer(error_response(ResponseStatus.MALFORMED_REQUEST))
UNAUTHORIZED = Answer(error_response(ResponseStatus.UNAUTHORIZED))
TRY_LATER = Answer(error_response(ResponseStatus.TRY_LATER))
INTERNAL_ERROR = Answer(error_response(ResponseStatus.INTERNAL_ERROR))


def signs_live() -> bool:
    """True when this process may sign OCSP responses itself (no key is loaded to find out).

    Not with ``KMI_SIGNING=worker``, where web processes hold no key material, nor when the
    default backend (where responder keys are generated) says it cannot sign here: the
    ``encrypted`` backend without a KEK.
    """
    if lifecycle_settings().signs_on_worker:
        return False
    can_sign = getattr(get_backend(), "can_sign", None)
    return bool(can_sign()) if callable(can_sign) else True


def answer(request_der: bytes, *, ca_name: str, now: dt.datetime | None = None) -> Answer:
    """Answer a DER OCSPRequest sent to the URL of CA ``ca_name`` (RFC 6960 §4.2.1 statuses)."""
    try:
        parsed = ocsp_der.parse_request(request_der)
    except MalformedRequest:
        return MALFORMED
    if ISSUERS.by_name(ca_name) is None:
        return UNAUTHORIZED
    issuers = [ISSUERS.by_cert_id(cert_id) for cert_id in parsed.cert_ids]
    first = issuers[0]
    # One response is signed by one CA's responder: every CertID must name that same KMI CA.
    if first is None or any(i is not first for i in issuers):
        return UNAUTHORIZED
    return _answer(first, parsed, resolve(now))


def _answer(issuer: Issuer, parsed: ParsedRequest, now: dt.datetime) -> Answer:
    cert_id = parsed.cert_ids[0]
    presignable = len(parsed.cert_ids) == 1 and cert_id.hash_algorithm in PRESIGNED_HASHES
    # A nonce needs a live signature where one can be made; elsewhere RFC 8954 §2.1 (RFC 6960
    # §4.4.1) lets the responder leave it out: the client then judges freshness by thisUpdate
    # (openssl warns "no nonce in response" and verifies).
    if presignable and (parsed.nonce is None or not signs_live()):
        hit = _presigned(issuer, cert_id, now)
        if hit is not None:
            return Answer(hit.der, hit.this_update, hit.next_update)
    if signs_live():
        return _sign_live(issuer, parsed, now)
    if not presignable:
        # One signature covers every SingleResponse of a response, and only SHA-1 and SHA-256
        # CertIDs are pre-signed: without a key this cannot be answered now (RFC 6960 §2.3).
        return TRY_LATER
    return _ask_for_presigning(issuer, cert_id, now)


def _ask_for_presigning(issuer: Issuer, cert_id: ocsp_der.CertID, now: dt.datetime) -> Answer:
    """A miss in a process that cannot sign: ``tryLater`` while the signing queue pre-signs it.

    A serial the CA never issued, or an expired certificate, is never pre-signed (there is no
    end to the serials anyone can ask about): that is ``unauthorized``, the status for a
    responder that cannot answer authoritatively (RFC 6960 §2.3, RFC 5019 §2.2.3).
    """
    found = (
        Certificate.objects.filter(
            ca_id=issuer.ca_id,
            issuer_generation=issuer.generation,
            serial=serial_hex(cert_id.serial_number),
            not_after__gt=now,
        )
        .values_list("pk", flat=True)
        .first()
        if cert_id.serial_number > 0
        else None
    )
    if found is None:
        return UNAUTHORIZED
    if MISSES.ask(ca_id=issuer.ca_id, certificate_id=found):
        log.info("OCSP: no pre-signed response for certificate %s of CA %s yet", found, issuer.name)
    return TRY_LATER


def _presigned(issuer: Issuer, cert_id: ocsp_der.CertID, now: dt.datetime) -> SignedResponse | None:
    """The pre-signed response: local micro-cache, then Redis, then the database."""
    if cert_id.serial_number <= 0:
        return None
    key = (issuer.ca_id, serial_hex(cert_id.serial_number), cert_id.hash_algorithm)
    hit = LOCAL.get(key)
    if hit is None or hit.next_update <= now:
        hit = STORE.get_cached(*key)
        if hit is None:
            hit = STORE.get_stored(*key, now)
        if hit is None or hit.next_update <= now:
            return None
        seconds = ocsp_settings().local_cache_seconds
        if seconds > 0:
            LOCAL.put(key, hit, seconds)
    # Serials are unique per CA, not per generation (CA key): a response pre-signed for this
    # serial under another generation's key names another CertID and does not answer this one.
    return hit if cert_id.issuer_key_hash in hit.der else None


def _sign_live(issuer: Issuer, parsed: ParsedRequest, now: dt.datetime) -> Answer:
    signer = SIGNERS.get(issuer.ca_id, now, issuer.generation)
    if signer is None:
        log.warning("OCSP: CA %s has no current responder yet; answering tryLater", issuer.name)
        return TRY_LATER
    serials = {serial_hex(c.serial_number) for c in parsed.cert_ids if c.serial_number > 0}
    found = {
        serial: (revoked_at, reason)
        for serial, revoked_at, reason in Certificate.objects.filter(
            ca_id=issuer.ca_id, issuer_generation=issuer.generation, serial__in=serials
        ).values_list("serial", "revoked_at", "revocation_reason")
    }
    singles = []
    for c in parsed.cert_ids:
        serial = serial_hex(c.serial_number) if c.serial_number > 0 else ""
        revoked_at, reason = found.get(serial, (None, None))
        singles.append(single_status(c.der, revoked_at, reason, known=serial in found))
    signed = build_response(signer=signer, singles=singles, now=now, nonce=parsed.nonce)
    if parsed.nonce is not None:
        return Answer(signed.der)
    return Answer(signed.der, signed.this_update, signed.next_update)
