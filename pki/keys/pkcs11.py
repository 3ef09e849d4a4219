"""The ``pkcs11`` key backend: keys made and kept inside an HSM (SoftHSM2 in the tests).

A key is generated on the token with CKA_SENSITIVE set and CKA_EXTRACTABLE clear, so its private
part never leaves the module; every signature is made by the token. KMI's ``Key.handle`` is the
CKA_ID (the hex of the key's UUID), which is also what ``destroy`` looks up to C_DestroyObject
the private and the public object.

``cryptography`` cannot sign with a key it cannot see, so a certificate or CRL builder is
first signed with a throwaway key of the same algorithm (one per process and algorithm, never
stored or used for anything else) to get the exact to-be-signed bytes (they depend on the
signature algorithm, not on the key), the token signs them, and the structure is assembled
again around the token's signature (``SEQUENCE { tbs, signatureAlgorithm, BIT STRING }``).
Every signature is verified with the key's public key before it is returned.

One session per process, opened on first use (and again in a forked child), and a lock around
every call into the module: SoftHSM2 is not safe for concurrent calls from several threads.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pki.exceptions import ConfigurationError, KeyBackendError
from pki.keys.base import generate_private_key, issuer_public_key, signature_verifies
from pki.models.key import KeyType
from pki.x509 import der

_EC_CURVES = {KeyType.EC_P256: "secp256r1", KeyType.EC_P384: "secp384r1", KeyType.EC_P521: "secp521r1"}
_EDWARDS = {KeyType.ED25519: "1.3.101.112", KeyType.ED448: "1.3.101.113"}
_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}
SUPPORTED = frozenset({*_EC_CURVES, *_EDWARDS, *_RSA_BITS})
# The throwaway key that yields the to-be-signed bytes, per kind of signature.
_THROWAWAY_TYPE = {
    rsa.RSAPublicKey: KeyType.RSA_2048,
    ec.EllipticCurvePublicKey: KeyType.EC_P256,
    ed25519.Ed25519PublicKey: KeyType.ED25519,
    ed448.Ed448PublicKey: KeyType.ED448,
}


class Pkcs11KeyBackend:
    """Keys in a PKCS#11 token: ``module`` (the library), ``token_label``, ``pin``."""

    def __init__(self, *, alias: str, module: str, token_label: str, pin: str) -> None:
        if not module or not Path(module).exists():
            raise ConfigurationError(f"PKCS#11 module {module!r} does not exist (KMI_PKCS11_MODULE)")
        if not pin:
            raise ConfigurationError("the PKCS#11 backend needs the token's user PIN (KMI_PKCS11_PIN)")
        self.alias = alias
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self._token = _shared_token(module, token_label)
        self._lock = self._token.lock
        self._session: Any = None
        self._keys: dict[str, Any] = {}
        self._public: dict[str, PublicKeyTypes] = {}
        self._throwaway: dict[KeyType, CertificateIssuerPrivateKeyTypes] = {}

    def __repr__(self) -> str:
        return f"<Pkcs11KeyBackend {self.alias} token={self.token_label!r}>"  # never the PIN

    # --- the session ------------------------------------------------------------------------
    def _open(self) -> Any:
        """The process's session on the token (call with the lock held). PKCS#11 logs in per
        process, not per session: every backend instance on this token shares one session."""
        shared = self._token
        if shared.session is None or shared.pid != os.getpid():
            import pkcs11
            from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn

            try:
                if shared.lib is None:
                    shared.lib = pkcs11.lib(self.module)
                elif shared.pid != os.getpid():
                    shared.lib.reinitialize()  # a forked child: the parent's sessions are not ours
                token = shared.lib.get_token(token_label=self.token_label)
                try:
                    shared.session = token.open(user_pin=self._pin, rw=True)
                except UserAlreadyLoggedIn:
                    shared.session = token.open(rw=True)
            except PKCS11Error as exc:
                raise KeyBackendError(
                    f"cannot open PKCS#11 token {self.token_label!r}: {type(exc).__name__} {exc}".strip()
                ) from None
            shared.pid = os.getpid()
        if self._session is not shared.session:
            self._session = shared.session
            self._keys.clear()  # object handles belong to the session they were found in
        return shared.session

    def can_sign(self) -> bool:
        """True: a configured token signs in any process that can reach it."""
        return True

    def check(self) -> None:
        """Open (or reuse) the session on the token; ``KeyBackendError`` when it cannot be reached."""
        with self._lock:
            self._open()

    # --- KeyBackend ------------------------------------------------------------------------
    def generate(self, *, key_id: uuid.UUID, key_type: KeyType) -> tuple[str, PublicKeyTypes]:
        """Generate a non-extractable key pair on the token; its CKA_ID is ``key_id``."""
        from pkcs11 import Attribute, Mechanism
        from pkcs11 import KeyType as P11KeyType
        from pkcs11.exceptions import PKCS11Error
        from pkcs11.util.ec import encode_named_curve_parameters

        kt = KeyType(key_type)
        if kt not in SUPPORTED:
            raise ConfigurationError(f"the PKCS#11 backend cannot make {kt.value} keys")
        handle = key_id.hex
        private = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
        }
        public = {Attribute.TOKEN: True, Attribute.VERIFY: True}
        names = {"id": key_id.bytes, "label": f"kmi-{key_id}", "store": True}
        with self._lock:
            session = self._open()
            try:
                if kt in _RSA_BITS:
                    session.generate_keypair(
                        P11KeyType.RSA,
                        _RSA_BITS[kt],
                        public_template=public,
                        private_template=private,
                        **names,
                    )
                else:
                    edwards = kt in _EDWARDS
                    curve = _EDWARDS[kt] if edwards else _EC_CURVES[kt]
                    params = session.create_domain_parameters(
                        P11KeyType.EC_EDWARDS if edwards else P11KeyType.EC,
                        {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
                        local=True,
                    )
                    params.generate_keypair(
                        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN if edwards else None,
                        public_template=public,
                        private_template=private,
                        **names,
                    )
            except PKCS11Error as exc:
                raise KeyBackendError(
                    f"the token could not make a {kt.value} key: {type(exc).__name__}"
                ) from None
            return handle, self._public_key_locked(handle)

    def find(self, *, label: str | None = None, key_id: str | None = None) -> tuple[str, PublicKeyTypes]:
        """A key already on the token (made outside KMI), by CKA_LABEL or CKA_ID (hex): its handle
        (the CKA_ID, as for KMI's own keys) and its public key (from the public object)."""
        from pkcs11 import Attribute, ObjectClass
        from pkcs11.exceptions import PKCS11Error

        if (label is None) == (key_id is None):
            raise ValueError("find a token key by its label or by its id, not both")
        template: dict[Any, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if label is not None:
            template[Attribute.LABEL] = label
        else:
            try:
                template[Attribute.ID] = bytes.fromhex(str(key_id))
            except ValueError:
                raise KeyBackendError(f"key id {key_id!r} is not hex") from None
        with self._lock:
            session = self._open()
            try:
                found = list(session.get_objects(template))
            except PKCS11Error as exc:
                raise KeyBackendError(f"cannot search the token: {type(exc).__name__}") from None
            what = f"label {label!r}" if label is not None else f"id {key_id}"
            if not found:
                raise KeyBackendError(f"the token holds no private key with {what}")
            if len(found) > 1:
                raise KeyBackendError(
                    f"the token holds {len(found)} private keys with {what}: name one by id"
                )
            cka_id = bytes(found[0][Attribute.ID] or b"")
            if not cka_id:
                raise KeyBackendError(f"the private key with {what} has no CKA_ID: give it one on the token")
            handle = cka_id.hex()
            return handle, self._public_key_locked(handle)

    def public_key(self, handle: str) -> PublicKeyTypes:
        """The public key, read from the token's public object (cached)."""
        with self._lock:
            return self._public_key_locked(handle)

    def sign_certificate(
        self, handle: str, builder: x509.CertificateBuilder, algorithm: hashes.HashAlgorithm | None
    ) -> x509.Certificate:
        """Sign a certificate: throwaway TBS, token signature, reassembled."""
        tbs = builder.sign(self._throwaway_for(handle), algorithm).tbs_certificate_bytes  # type: ignore[arg-type]
        return x509.load_der_x509_certificate(self._wrap(handle, tbs, algorithm))

    def sign_crl(
        self,
        handle: str,
        builder: x509.CertificateRevocationListBuilder,
        algorithm: hashes.HashAlgorithm | None,
    ) -> x509.CertificateRevocationList:
        """Sign a CRL: throwaway TBS, token signature, reassembled."""
        tbs = builder.sign(self._throwaway_for(handle), algorithm).tbs_certlist_bytes  # type: ignore[arg-type]
        return x509.load_der_x509_crl(self._wrap(handle, tbs, algorithm))

    def sign_data(self, handle: str, data: bytes, algorithm: hashes.HashAlgorithm | None) -> bytes:
        """Sign ``data`` on the token as X.509 does for this key type (ECDSA DER-encoded), and
        check the signature with the public key before returning it."""
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error

        public_key = self.public_key(handle)
        with self._lock:
            key = self._private_key_locked(handle)
            try:
                if isinstance(public_key, rsa.RSAPublicKey):
                    mechanism = {
                        "sha256": Mechanism.SHA256_RSA_PKCS,
                        "sha384": Mechanism.SHA384_RSA_PKCS,
                        "sha512": Mechanism.SHA512_RSA_PKCS,
                    }[_hash_name(algorithm)]
                    signature = bytes(key.sign(data, mechanism=mechanism))
                elif isinstance(public_key, ec.EllipticCurvePublicKey):
                    # SoftHSM2 has no CKM_ECDSA_SHA256: hash here, sign the digest with CKM_ECDSA.
                    digest = hashes.Hash(_hash(algorithm))
                    digest.update(data)
                    raw = bytes(key.sign(digest.finalize(), mechanism=Mechanism.ECDSA))
                    half = len(raw) // 2
                    signature = encode_dss_signature(
                        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
                    )
                else:
                    signature = bytes(key.sign(data, mechanism=Mechanism.EDDSA))
            except PKCS11Error as exc:
                raise KeyBackendError(f"the token refused to sign: {type(exc).__name__}") from None
        _verify(public_key, signature, data, algorithm)
        return signature

    def decrypt(self, handle: str, ciphertext: bytes) -> bytes:
        """Refused: KMI makes signing-only keys on the token (CKA_DECRYPT false), so a CA key can
        never double as a decryption oracle; SCEP RA keys live in the encrypted backend."""
        raise KeyBackendError(
            f"the PKCS#11 backend does not decrypt with key {handle}: its keys only sign "
            "(SCEP RA keys are kept by the encrypted backend)"
        )

    def destroy(self, handle: str) -> None:
        """C_DestroyObject on the key's private and public objects (idempotent)."""
        from pkcs11 import Attribute
        from pkcs11.exceptions import PKCS11Error

        with self._lock:
            session = self._open()
            try:
                for obj in list(session.get_objects({Attribute.ID: bytes.fromhex(handle)})):
                    obj.destroy()
            except PKCS11Error as exc:
                raise KeyBackendError(
                    f"the token could not destroy key {handle}: {type(exc).__name__}"
                ) from None
            self._keys.pop(handle, None)
            self._public.pop(handle, None)

    # --- helpers ---------------------------------------------------------------------------
    def _find(self, handle: str, object_class: Any) -> Any:
        from pkcs11.exceptions import NoSuchKey, PKCS11Error

        session = self._open()
        try:
            return session.get_key(object_class=object_class, id=bytes.fromhex(handle))
        except NoSuchKey:
            raise KeyBackendError(f"the token holds no key {handle} (destroyed?)") from None
        except (PKCS11Error, ValueError) as exc:
            raise KeyBackendError(f"cannot find key {handle} on the token: {type(exc).__name__}") from None

    def _private_key_locked(self, handle: str) -> Any:
        from pkcs11 import ObjectClass

        self._open()  # a forked child reopens (and forgets the parent's objects) first
        key = self._keys.get(handle)
        if key is None:
            key = self._keys[handle] = self._find(handle, ObjectClass.PRIVATE_KEY)
        return key

    def _public_key_locked(self, handle: str) -> PublicKeyTypes:
        cached = self._public.get(handle)
        if cached is not None:
            return cached
        from pkcs11 import Attribute, ObjectClass
        from pkcs11 import KeyType as P11KeyType
        from pkcs11.util.ec import encode_ec_public_key

        obj = self._find(handle, ObjectClass.PUBLIC_KEY)
        public_key: PublicKeyTypes
        if obj.key_type == P11KeyType.RSA:
            exponent = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
            modulus = int.from_bytes(obj[Attribute.MODULUS], "big")
            public_key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
        elif obj.key_type == P11KeyType.EC:
            public_key = serialization.load_der_public_key(encode_ec_public_key(obj))
        else:  # EC_EDWARDS: CKA_EC_POINT is an OCTET STRING around the raw public key
            point = bytes(obj[Attribute.EC_POINT])
            raw = point[2:] if point[:1] == b"\x04" and point[1] == len(point) - 2 else point
            edwards = ed25519.Ed25519PublicKey if len(raw) == 32 else ed448.Ed448PublicKey
            public_key = edwards.from_public_bytes(raw)
        self._public[handle] = public_key
        return public_key

    def _throwaway_for(self, handle: str) -> CertificateIssuerPrivateKeyTypes:
        """A key of the same kind as ``handle``'s, to let ``cryptography`` encode the TBS."""
        public_key = self.public_key(handle)
        for cls, key_type in _THROWAWAY_TYPE.items():
            if isinstance(public_key, cls):
                with self._lock:
                    if key_type not in self._throwaway:
                        self._throwaway[key_type] = generate_private_key(key_type)
                    return self._throwaway[key_type]
        raise KeyBackendError(f"the PKCS#11 backend cannot sign with {type(public_key).__name__}")

    def _wrap(self, handle: str, tbs: bytes, algorithm: hashes.HashAlgorithm | None) -> bytes:
        """``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` (RFC 5280 §4.1, §5.1)."""
        signature = self.sign_data(handle, tbs, algorithm)
        identifier = der.signature_algorithm(issuer_public_key(self.public_key(handle)), algorithm)
        return der.sequence(tbs, identifier, der.bit_string(signature))


@dataclass
class _Token:
    """One token's library, session and lock in this process (shared by backend instances)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pid: int = -1
    lib: Any = None
    session: Any = None


_TOKENS: dict[tuple[str, str], _Token] = {}
_TOKENS_LOCK = threading.Lock()


def _shared_token(module: str, token_label: str) -> _Token:
    with _TOKENS_LOCK:
        return _TOKENS.setdefault((module, token_label), _Token())


def _hash(algorithm: hashes.HashAlgorithm | None) -> hashes.HashAlgorithm:
    if algorithm is None:
        raise KeyBackendError("RSA and ECDSA signatures need a hash algorithm")
    return algorithm


def _hash_name(algorithm: hashes.HashAlgorithm | None) -> str:
    name = _hash(algorithm).name
    if name not in ("sha256", "sha384", "sha512"):
        raise KeyBackendError(f"the PKCS#11 backend does not sign with {name}")
    return name


def _verify(
    public_key: PublicKeyTypes, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None
) -> None:
    """Refuse a signature that does not verify (a token fault must not reach a certificate)."""
    if not signature_verifies(public_key, signature, data, algorithm):
        raise KeyBackendError("the token's signature does not verify; nothing was issued")
