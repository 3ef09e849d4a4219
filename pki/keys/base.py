"""The ``KeyBackend`` protocol and key-type helpers shared by every backend."""

from __future__ import annotations

import uuid
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    PublicKeyTypes,
)

from pki.exceptions import WeakKey
from pki.models.key import KeyType

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    KeyType.EC_P256: ec.SECP256R1,
    KeyType.EC_P384: ec.SECP384R1,
    KeyType.EC_P521: ec.SECP521R1,
}
_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}
_ML_DSA: dict[
    str, tuple[type[mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey], type]
] = {
    KeyType.ML_DSA_44: (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    KeyType.ML_DSA_65: (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    KeyType.ML_DSA_87: (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}
# Key types that sign without a separate digest (the algorithm fixes it): EdDSA and ML-DSA.
PURE_SIGNATURE_TYPES = frozenset(
    {KeyType.ED25519, KeyType.ED448, KeyType.ML_DSA_44, KeyType.ML_DSA_65, KeyType.ML_DSA_87}
)


def generate_private_key(key_type: KeyType | str) -> CertificateIssuerPrivateKeyTypes:
    """Generate a fresh private key of ``key_type``."""
    kt = KeyType(key_type)
    if kt in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[kt])
    if kt in _CURVES:
        return ec.generate_private_key(_CURVES[kt]())
    if kt == KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if kt in _ML_DSA:
        return _ML_DSA[kt][0].generate()
    return ed448.Ed448PrivateKey.generate()


def key_type_of(public_key: PublicKeyTypes) -> KeyType:
    """Classify a public key as one of KMI's key types, or raise ``WeakKey``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        for kt, size in sorted(_RSA_BITS.items(), key=lambda kv: -kv[1]):
            if bits >= size:
                return kt
        raise WeakKey(f"RSA key of {bits} bits is too small (minimum 2048)")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        for curve_type, curve in _CURVES.items():
            if isinstance(public_key.curve, curve):
                return KeyType(curve_type)
        raise WeakKey(f"elliptic curve {public_key.curve.name} is not allowed")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(public_key, ed448.Ed448PublicKey):
        return KeyType.ED448
    for ml_type, (_, public_cls) in _ML_DSA.items():
        if isinstance(public_key, public_cls):
            return KeyType(ml_type)
    raise WeakKey(f"public key type {type(public_key).__name__} is not supported")


def signature_hash(key_type: KeyType | str) -> hashes.HashAlgorithm | None:
    """Return the digest a CA key of ``key_type`` signs with (None for EdDSA and ML-DSA)."""
    kt = KeyType(key_type)
    if kt == KeyType.EC_P384:
        return hashes.SHA384()
    if kt == KeyType.EC_P521:
        return hashes.SHA512()
    if kt in PURE_SIGNATURE_TYPES:
        return None
    return hashes.SHA256()


def issuer_public_key(public_key: PublicKeyTypes) -> CertificateIssuerPublicKeyTypes:
    """Narrow a public key to one that can sign certificates."""
    if isinstance(
        public_key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey
        | mldsa.MLDSA44PublicKey
        | mldsa.MLDSA65PublicKey
        | mldsa.MLDSA87PublicKey,
    ):
        return public_key
    raise WeakKey(f"{type(public_key).__name__} cannot sign certificates")


def signature_verifies(
    public_key: PublicKeyTypes, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None
) -> bool:
    """True when ``signature`` over ``data`` verifies as X.509 signs with this key type."""
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            if algorithm is None:
                return False
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if algorithm is None:
                return False
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(
            public_key,
            ed25519.Ed25519PublicKey
            | ed448.Ed448PublicKey
            | mldsa.MLDSA44PublicKey
            | mldsa.MLDSA65PublicKey
            | mldsa.MLDSA87PublicKey,
        ):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@runtime_checkable
class KeyBackend(Protocol):
    """Where private keys live. Implementations never return or log private key material."""

    alias: str

    def generate(self, *, key_id: uuid.UUID, key_type: KeyType) -> tuple[str, PublicKeyTypes]:
        """Create a key for ``key_id``; return its opaque handle and its public key."""
        ...

    def public_key(self, handle: str) -> PublicKeyTypes:
        """Return the public key behind ``handle``."""
        ...

    def sign_certificate(
        self, handle: str, builder: x509.CertificateBuilder, algorithm: hashes.HashAlgorithm | None
    ) -> x509.Certificate:
        """Sign a certificate builder with the key behind ``handle``."""
        ...

    def sign_crl(
        self,
        handle: str,
        builder: x509.CertificateRevocationListBuilder,
        algorithm: hashes.HashAlgorithm | None,
    ) -> x509.CertificateRevocationList:
        """Sign a CRL builder with the key behind ``handle``."""
        ...

    def sign_data(self, handle: str, data: bytes, algorithm: hashes.HashAlgorithm | None) -> bytes:
        """Return the raw signature over ``data`` (DER-encoded for ECDSA, as in X.509): what CRLs
        and OCSP responses are signed with (pki/crl.py and pki/ocsp/responses.py encode their TBS)."""
        ...

    def destroy(self, handle: str) -> None:
        """Erase the key behind ``handle`` for good."""
        ...
