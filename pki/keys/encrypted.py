"""The ``encrypted`` backend: PKCS#8 sealed with AES-256-GCM under a per-key DEK wrapped by a KEK."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import transaction

from pki.clock import utcnow
from pki.conf import current_pki_settings, pki_settings
from pki.exceptions import ConfigurationError, KeyBackendError
from pki.keys.base import generate_private_key
from pki.models.key import KeyType, SealedKey

NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit IVs, random for each encryption
FORMAT = b"kmi1"  # version tag inside the associated data


def _aad(key_id: uuid.UUID | str, part: bytes, kek_id: str = "") -> bytes:
    return b"|".join([FORMAT, part, str(key_id).encode(), kek_id.encode()])


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


class EncryptedKeyBackend:
    """Keys sealed in the database; the KEKs come from the environment or a file (never the DB)."""

    def __init__(self, *, alias: str) -> None:
        self.alias = alias
        self._cache: dict[str, tuple[float, CertificateIssuerPrivateKeyTypes]] = {}
        self._lock = threading.Lock()

    # --- KEKs ---------------------------------------------------------------------------------
    @staticmethod
    def _kek(kek_id: str) -> bytes:
        conf = current_pki_settings()
        if kek_id not in conf.keks:
            # A key rewrapped under a KEK this process has not read yet: read KMI_KEK_FILE now.
            conf = current_pki_settings(force=True)
        keks = conf.keks
        if not keks:
            raise ConfigurationError(conf.kek_problem or "no key-encryption key configured")
        try:
            return keks[kek_id]
        except KeyError:
            raise KeyBackendError(f"KEK {kek_id!r} is not configured (known: {', '.join(keks)})") from None

    @staticmethod
    def _current_kek() -> tuple[str, bytes]:
        conf = current_pki_settings()
        if conf.current_kek_id is None:
            raise ConfigurationError(conf.kek_problem or "no key-encryption key configured")
        return conf.current_kek_id, conf.keks[conf.current_kek_id]

    def can_sign(self) -> bool:
        """True when this process has a KEK, so sealed keys can be used here (nothing is unsealed).

        Web processes of a ``KMI_SIGNING=worker`` deployment run without one; callers that have a
        fallback (the OCSP responder serves pre-signed responses) ask this instead of failing.
        """
        return current_pki_settings().current_kek_id is not None

    def check(self) -> None:
        """Raise ``ConfigurationError`` when this process has no KEK (no sealed key could be used)."""
        self._current_kek()

    # --- protocol -----------------------------------------------------------------------------
    def generate(self, *, key_id: uuid.UUID, key_type: KeyType) -> tuple[str, PublicKeyTypes]:
        """Generate a key, seal it under a fresh DEK and the current KEK, and store it."""
        private_key = generate_private_key(key_type)
        self.store(key_id=key_id, private_key=private_key)
        return str(key_id), private_key.public_key()

    def store(self, *, key_id: uuid.UUID, private_key: CertificateIssuerPrivateKeyTypes) -> str:
        """Seal an existing private key (import, or server-generated end-entity key)."""
        kek_id, kek = self._current_kek()
        dek = AESGCM.generate_key(bit_length=256)
        pkcs8 = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        SealedKey.objects.create(
            key_id=key_id,
            kek_id=kek_id,
            wrapped_dek=_seal(kek, dek, _aad(key_id, b"dek", kek_id)),
            ciphertext=_seal(dek, pkcs8, _aad(key_id, b"pkcs8")),
        )
        return str(key_id)

    def _private_key(self, handle: str) -> CertificateIssuerPrivateKeyTypes:
        ttl = pki_settings().key_cache_seconds
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(handle)
            if hit is not None and now - hit[0] < ttl:
                return hit[1]
        try:
            sealed = SealedKey.objects.get(key_id=handle)
        except SealedKey.DoesNotExist:
            raise KeyBackendError(f"key {handle} has no sealed material (destroyed?)") from None
        try:
            dek = _open(
                self._kek(sealed.kek_id), bytes(sealed.wrapped_dek), _aad(handle, b"dek", sealed.kek_id)
            )
            pkcs8 = _open(dek, bytes(sealed.ciphertext), _aad(handle, b"pkcs8"))
        except InvalidTag:
            raise KeyBackendError(f"key {handle} does not decrypt: wrong KEK or tampered data") from None
        key = cast(CertificateIssuerPrivateKeyTypes, serialization.load_der_private_key(pkcs8, None))
        if ttl:
            with self._lock:
                self._cache[handle] = (now, key)
        return key

    def export_private_key(self, handle: str) -> CertificateIssuerPrivateKeyTypes:
        """Return a key for its one delivery (server-generated end-entity keys only; see pki.serverkeys)."""
        return self._private_key(handle)

    def public_key(self, handle: str) -> PublicKeyTypes:
        """Return the public key behind ``handle``."""
        return self._private_key(handle).public_key()

    def sign_certificate(
        self, handle: str, builder: x509.CertificateBuilder, algorithm: hashes.HashAlgorithm | None
    ) -> x509.Certificate:
        """Sign a certificate."""
        return builder.sign(self._private_key(handle), algorithm)  # type: ignore[arg-type]

    def sign_crl(
        self,
        handle: str,
        builder: x509.CertificateRevocationListBuilder,
        algorithm: hashes.HashAlgorithm | None,
    ) -> x509.CertificateRevocationList:
        """Sign a CRL."""
        return builder.sign(self._private_key(handle), algorithm)  # type: ignore[arg-type]

    def sign_data(self, handle: str, data: bytes, algorithm: hashes.HashAlgorithm | None) -> bytes:
        """Sign raw bytes (a TBS structure) as X.509 does for this key type."""
        key = self._private_key(handle)
        if isinstance(key, rsa.RSAPrivateKey):
            assert algorithm is not None
            return key.sign(data, padding.PKCS1v15(), algorithm)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert algorithm is not None
            return key.sign(data, ec.ECDSA(algorithm))
        if isinstance(
            key,
            ed25519.Ed25519PrivateKey
            | ed448.Ed448PrivateKey
            | mldsa.MLDSA44PrivateKey
            | mldsa.MLDSA65PrivateKey
            | mldsa.MLDSA87PrivateKey,
        ):
            return key.sign(data)
        raise KeyBackendError(f"cannot sign raw data with {type(key).__name__}")

    def destroy(self, handle: str) -> None:
        """Crypto-shred: erase the wrapped DEK and the ciphertext."""
        with transaction.atomic():
            # Overwrite before deleting so no copy of the blobs stays in the live row version.
            SealedKey.objects.filter(key_id=handle).update(wrapped_dek=b"", ciphertext=b"")
            SealedKey.objects.filter(key_id=handle).delete()
        with self._lock:
            self._cache.pop(handle, None)

    def rewrap(self, handle: str) -> bool:
        """Re-wrap the DEK of ``handle`` under the current KEK; return True if it changed."""
        kek_id, kek = self._current_kek()
        sealed = SealedKey.objects.select_for_update().get(key_id=handle)
        if sealed.kek_id == kek_id:
            return False
        try:
            dek = _open(
                self._kek(sealed.kek_id), bytes(sealed.wrapped_dek), _aad(handle, b"dek", sealed.kek_id)
            )
        except InvalidTag:
            raise KeyBackendError(f"key {handle} does not decrypt under KEK {sealed.kek_id!r}") from None
        sealed.wrapped_dek = _seal(kek, dek, _aad(handle, b"dek", kek_id))
        sealed.kek_id = kek_id
        sealed.rewrapped_at = utcnow()
        sealed.save(update_fields=["wrapped_dek", "kek_id", "rewrapped_at"])
        return True


# --- other secrets: sealed under the KEK like keys' DEKs ---------------------------------------
SECRET_FORMAT = b"kmi-secret1"


def _secret_aad(purpose: str, name: str, kek_id: str) -> bytes:
    return b"|".join([SECRET_FORMAT, purpose.encode(), name.encode(), kek_id.encode()])


def seal_secret(*, purpose: str, name: str, plaintext: bytes) -> tuple[str, bytes]:
    """Seal a secret KMI must read back (an ACME EAB HMAC key) under the current KEK.

    ``purpose`` and ``name`` (what it is and whose) are bound as associated data, so a sealed
    value moved to another row does not open. Returns the KEK id and the sealed bytes.
    """
    kek_id, kek = EncryptedKeyBackend._current_kek()
    return kek_id, _seal(kek, plaintext, _secret_aad(purpose, name, kek_id))


def open_secret(*, purpose: str, name: str, kek_id: str, sealed: bytes) -> bytes:
    """Open a secret sealed by ``seal_secret``; ``KeyBackendError`` when it does not decrypt."""
    try:
        return _open(EncryptedKeyBackend._kek(kek_id), sealed, _secret_aad(purpose, name, kek_id))
    except InvalidTag:
        raise KeyBackendError(f"{purpose} {name} does not decrypt: wrong KEK or tampered data") from None
