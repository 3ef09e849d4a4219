"""Server-generated keys, for clients that cannot make a CSR.

KMI generates the key, seals it in the key backend, requests and (when the profile allows)
issues its certificate, and hands it out once as a password-protected PKCS#12 (PBES2,
AES-256-CBC, PBKDF2-SHA256). After that one download KMI destroys its copy of the key, unless
the profile asks for escrow.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, Protocol, cast, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
    pkcs12,
)
from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.conf import pki_settings
from pki.destruction import destroy_key
from pki.enrollment import enroll
from pki.exceptions import AlreadyDelivered, ConfigurationError, InvalidState, PolicyViolation
from pki.issuance import chain_for
from pki.keys import generate_private_key, get_backend, signature_hash
from pki.keys.base import KeyBackend
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.delivery import KeyDelivery
from pki.models.key import Key, KeyPurpose, KeyState, KeyType
from pki.models.profile import Profile
from pki.models.request import RequestState
from pki.x509.csr import spki_der, spki_fingerprint
from pki.x509.names import SAN

MIN_PASSWORD_LENGTH = 12
KDF_ROUNDS = 100_000
# Generating these takes long enough to tie up a web worker: not offered for server keys.
SERVER_KEY_TYPES = tuple(kt for kt in KeyType if kt != KeyType.RSA_4096)
SERVER_KEY_TYPE_CHOICES = [(kt.value, kt.label) for kt in SERVER_KEY_TYPES]


@runtime_checkable
class StoringKeyBackend(KeyBackend, Protocol):
    """A backend that can seal a key made elsewhere and hand an end-entity key back once."""

    def store(self, *, key_id: uuid.UUID, private_key: CertificateIssuerPrivateKeyTypes) -> str:
        """Seal ``private_key`` under ``key_id``; return its handle."""
        ...

    def export_private_key(self, handle: str) -> CertificateIssuerPrivateKeyTypes:
        """Return the private key behind ``handle``."""
        ...


def storing_backend(alias: str | None = None) -> StoringKeyBackend:
    """The backend that holds a server-generated key (``alias``), or for a new one the default
    backend when it can hand keys over, else the ``encrypted`` one (an HSM backend cannot: its
    keys never leave the token)."""
    candidates = [alias] if alias is not None else [None, "encrypted"]
    for name in candidates:
        backend = get_backend(name)
        if isinstance(backend, StoringKeyBackend):
            return backend
    raise ConfigurationError(
        f"key backend {alias or pki_settings().default_key_backend!r} cannot store and export "
        "end-entity keys; server-generated keys need the encrypted backend"
    )


def new_download_secret() -> tuple[str, str]:
    """A one-time download secret for a new delivery and its SHA-256 (hex): the web side gives the
    secret to the requester once and passes only the digest to ``request_server_key``."""
    secret = secrets.token_urlsafe(32)
    return secret, secret_digest(secret)


def secret_digest(secret: str) -> str:
    """SHA-256 (hex) of a download secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def request_server_key(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    subject: x509.Name,
    sans: Sequence[SAN],
    key_type: KeyType | str,
    actor: str,
    download_secret_sha256: str,
    requester: User | None = None,
    validity_days: int | None = None,
    delivery_id: uuid.UUID | str | None = None,
    now: dt.datetime | None = None,
) -> KeyDelivery:
    """Generate a key for a client, request its certificate (issued at once unless approval is needed).

    It seals the key, so it runs where the KEK is: in process, or on a signing worker through
    ``run_signing("request_server_key", delivery_id=…)`` (the caller picks ``delivery_id``).
    ``download_secret_sha256`` is the digest of the one-time secret the hand-over will need
    (``new_download_secret``).
    """
    now = resolve(now)
    if len(download_secret_sha256) != 64 or any(c not in "0123456789abcdef" for c in download_secret_sha256):
        raise PolicyViolation("a server key needs the SHA-256 (hex) of its one-time download secret")
    kt = KeyType(key_type)
    if kt not in SERVER_KEY_TYPES:
        raise PolicyViolation(f"KMI does not generate {kt} keys for clients")
    backend = storing_backend()
    private_key = generate_private_key(kt)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([s.general_name() for s in sans]), critical=False
        )
    csr = builder.sign(private_key, signature_hash(kt))  # type: ignore[arg-type]
    public_key = private_key.public_key()
    key_id = uuid.uuid4()
    with transaction.atomic():
        result = enroll(
            ca=ca,
            profile=profile,
            csr=csr,
            actor=actor,
            requester=requester,
            validity_days=validity_days,
            now=now,
        )
        key = Key.objects.create(
            id=key_id,
            key_type=kt,
            purpose=KeyPurpose.END_ENTITY,
            backend=backend.alias,
            handle=backend.store(key_id=key_id, private_key=private_key),
            public_key_der=spki_der(public_key),
            spki_sha256=spki_fingerprint(public_key),
            state=KeyState.ACTIVE,
            escrow=profile.escrow,
            created_at=now,
            activated_at=now,
        )
        if result.certificate is not None:
            Certificate.objects.filter(pk=result.certificate.pk).update(key=key)
        delivery = KeyDelivery.objects.create(
            id=uuid.UUID(str(delivery_id)) if delivery_id is not None else uuid.uuid4(),
            key=key,
            request=result.request,
            requester=requester,
            created_at=now,
            secret_sha256=download_secret_sha256,
        )
        audit.record(
            action="key.generated",
            actor=actor,
            obj=key,
            details={
                "key_type": kt.value,
                "purpose": KeyPurpose.END_ENTITY.value,
                "backend": backend.alias,
                "spki_sha256": key.spki_sha256,
                "escrow": key.escrow,
                "request": result.request.pk,
                "delivery": str(delivery.pk),
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return delivery


def pkcs12_bundle(
    private_key: CertificateIssuerPrivateKeyTypes,
    chain: Sequence[x509.Certificate],
    serial: str,
    password: str,
) -> bytes:
    """The key and its chain (leaf first; may be empty) as a PKCS#12 under AES-256 and ``password``."""
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        name=serial.encode(),
        key=private_key,  # type: ignore[arg-type]
        cert=chain[0] if chain else None,
        cas=list(chain[1:]) or None,
        encryption_algorithm=encryption,
    )


def check_pkcs12_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PolicyViolation(f"the PKCS#12 password needs at least {MIN_PASSWORD_LENGTH} characters")


def _hand_over(
    *, delivery_id: uuid.UUID | str, download_secret: str, actor: str, now: dt.datetime
) -> tuple[CertificateIssuerPrivateKeyTypes, list[x509.Certificate], str]:
    """Take the one delivery of a key (caller's transaction): check its one-time secret, mark it
    delivered, destroy KMI's copy unless escrowed, audit; return the private key, its chain and
    the certificate's serial."""
    row = (
        KeyDelivery.objects.select_for_update(of=("self",))
        .select_related("key", "request")
        .get(pk=delivery_id)
    )
    if row.delivered_at is not None:
        raise AlreadyDelivered(f"the key of delivery {row.pk} was downloaded at {row.delivered_at:%c}")
    if not row.secret_sha256:
        raise PolicyViolation(
            f"delivery {row.pk} was made before download secrets existed; request a new server key"
        )
    if not hmac.compare_digest(secret_digest(download_secret), row.secret_sha256):
        raise PolicyViolation("wrong download secret for this delivery")
    if row.request.state != RequestState.ISSUED:
        raise InvalidState(f"request {row.request_id} is {row.request.state}; no certificate yet")
    key = row.key
    if key.state == KeyState.DESTROYED or not key.handle:
        raise InvalidState(f"key {key.pk} was destroyed")
    certificate = Certificate.objects.select_related("ca").get(request_id=row.request_id)
    chain = chain_for(certificate)
    private_key = storing_backend(key.backend).export_private_key(key.handle)
    row.delivered_at = now
    row.delivered_to = actor
    row.save(update_fields=["delivered_at", "delivered_to"])
    # Destroy first: the global audit lane before the CA's, the order other use cases lock them in.
    if not key.escrow:
        destroy_key(key=key, actor=actor, reason="delivered once as PKCS#12; no escrow", now=now)
    audit.record(
        action="key.delivered",
        actor=actor,
        obj=key,
        details={"delivery": str(row.pk), "serial": certificate.serial, "escrow": key.escrow},
        scope=f"ca:{certificate.ca_id}",
        now=now,
    )
    return private_key, list(chain), certificate.serial


def deliver_pkcs12(
    *,
    delivery: KeyDelivery,
    password: str,
    download_secret: str,
    actor: str,
    user: User | None = None,
    now: dt.datetime | None = None,
) -> bytes:
    """Return the key and its chain as an AES-256 PKCS#12, once; then destroy KMI's copy (unless escrow).

    ``download_secret`` is the one-time secret given to the requester when the delivery was made.
    Where the KEK is not (``KMI_SIGNING=worker``), a signing worker hands the key over sealed
    to a one-time key of this process (``hand_over_sealed``; ``user``, the requester, is checked
    again there) and the PKCS#12 is made here.
    """
    from pki.signing import signs_here

    now = resolve(now)
    check_pkcs12_password(password)
    if not signs_here():
        private_key = receive_sealed(
            "hand_over_server_key",
            user=user,
            delivery_id=str(delivery.pk),
            download_secret=download_secret,
            actor=actor,
        )
        certificate = Certificate.objects.select_related("ca").get(request_id=delivery.request_id)
        return pkcs12_bundle(private_key, chain_for(certificate), certificate.serial, password)
    with transaction.atomic():
        private_key, chain, serial = _hand_over(
            delivery_id=delivery.pk, download_secret=download_secret, actor=actor, now=now
        )
        return pkcs12_bundle(private_key, chain, serial, password)


# --- a key handed from a signing worker to a web process -------------------------------------
# X25519 to the web process's one-time key, HKDF-SHA256, AES-256-GCM: what travels through the
# broker and the result store is ciphertext only that process can open.
_SEAL_INFO = b"kmi server key hand-over v1"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _seal_key(recipient: x25519.X25519PublicKey, *, ephemeral: x25519.X25519PrivateKey) -> bytes:
    shared = ephemeral.exchange(recipient)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(shared)


def hand_over_sealed(
    *, delivery_id: str, download_secret: str, actor: str, recipient: str, now: dt.datetime | None = None
) -> dict[str, str]:
    """Take a key's one delivery (as ``deliver_pkcs12``) and return it sealed to ``recipient``.

    ``recipient`` is a base64 X25519 public key; the private key travels as PKCS#8 under
    AES-256-GCM with a key only its holder can derive.
    """
    now = resolve(now)
    peer = _recipient(recipient)
    with transaction.atomic():
        private_key, _chain, _serial = _hand_over(
            delivery_id=delivery_id, download_secret=download_secret, actor=actor, now=now
        )
    return seal_private_key(private_key, peer)


def _recipient(recipient: str) -> x25519.X25519PublicKey:
    try:
        return x25519.X25519PublicKey.from_public_bytes(base64.b64decode(recipient, validate=True))
    except ValueError:
        raise PolicyViolation("the recipient must be a base64 X25519 public key") from None


def seal_private_key(
    private_key: CertificateIssuerPrivateKeyTypes, recipient: x25519.X25519PublicKey | str
) -> dict[str, str]:
    """The key as PKCS#8 under AES-256-GCM with a key only ``recipient`` (X25519, base64 or
    object) can derive: what a signing worker hands to a web process through the broker."""
    peer = _recipient(recipient) if isinstance(recipient, str) else recipient
    der = private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    ephemeral = x25519.X25519PrivateKey.generate()
    nonce = os.urandom(12)
    ciphertext = AESGCM(_seal_key(peer, ephemeral=ephemeral)).encrypt(nonce, der, _SEAL_INFO)
    return {
        "ephemeral": _b64(ephemeral.public_key().public_bytes_raw()),
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }


def receive_sealed(use_case: str, *, user: User | None, **kwargs: Any) -> CertificateIssuerPrivateKeyTypes:
    """Have a signing worker hand a private key over through ``use_case`` (for ``user``), sealed to
    a one-time X25519 key of this process (the plain key never crosses the broker)."""
    from pki.signing import run_signing

    recipient = x25519.X25519PrivateKey.generate()
    sealed = run_signing(
        use_case, user=user, recipient=_b64(recipient.public_key().public_bytes_raw()), **kwargs
    )
    return cast(
        CertificateIssuerPrivateKeyTypes, load_der_private_key(_open(recipient, sealed), password=None)
    )


def _open(recipient: x25519.X25519PrivateKey, sealed: dict[str, str]) -> bytes:
    ephemeral = x25519.X25519PublicKey.from_public_bytes(base64.b64decode(sealed["ephemeral"]))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(
        recipient.exchange(ephemeral)
    )
    return AESGCM(key).decrypt(
        base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ciphertext"]), _SEAL_INFO
    )
