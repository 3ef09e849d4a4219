"""Strict JWS (RFC 7515) verification for ACME (RFC 8555 §6.2), on ``cryptography`` directly.

Only the flattened JSON serialization with a protected header is accepted; the algorithm must be
on the allowlist and match the key; ``none`` and HMAC are refused except for external account
binding, which is the only place ``verify_hmac`` is called.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pki.acme.exceptions import BadNonce, BadPublicKey, BadSignatureAlgorithm, Malformed, Unauthorized

# RFC 8555 §6.2: servers MUST support ES256 and SHOULD support EdDSA; RS256 for older clients.
ALLOWED_ALGORITHMS = ("RS256", "ES256", "ES384", "EdDSA")
HMAC_ALGORITHMS: dict[str, hashes.HashAlgorithm] = {
    "HS256": hashes.SHA256(),
    "HS384": hashes.SHA384(),
    "HS512": hashes.SHA512(),
}
MIN_RSA_BITS = 2048

_B64U = re.compile(r"\A[A-Za-z0-9_-]*\Z")

AccountPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def b64u_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: object, *, what: str) -> bytes:
    """Decode unpadded base64url strictly; anything else is ``malformed``."""
    if not isinstance(text, str) or not _B64U.match(text) or len(text) % 4 == 1:
        raise Malformed(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Malformed(f"{what} is not unpadded base64url") from None


def _int(value: object, what: str) -> int:
    return int.from_bytes(b64u_decode(value, what=what), "big")


_CURVES: dict[str, tuple[ec.EllipticCurve, int, str]] = {
    "P-256": (ec.SECP256R1(), 32, "ES256"),
    "P-384": (ec.SECP384R1(), 48, "ES384"),
}


def public_key_from_jwk(jwk: object) -> AccountPublicKey:
    """Turn a public JWK (RSA, EC P-256/P-384, OKP Ed25519) into a key; refuse anything else."""
    if not isinstance(jwk, dict):
        raise Malformed("jwk must be a JSON object")
    if "d" in jwk or "p" in jwk or "k" in jwk:
        raise Malformed("jwk must be a public key (it carries private or symmetric material)")
    kty = jwk.get("kty")
    if kty == "RSA":
        n, e = _int(jwk.get("n"), "jwk n"), _int(jwk.get("e"), "jwk e")
        if n.bit_length() < MIN_RSA_BITS:
            raise BadPublicKey(f"RSA account keys must have at least {MIN_RSA_BITS} bits")
        if e < 3 or e % 2 == 0:
            raise BadPublicKey("RSA public exponent is not acceptable")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "EC":
        crv = jwk.get("crv")
        if crv not in _CURVES:
            raise BadPublicKey(f"EC curve {crv!r} is not supported (use P-256 or P-384)")
        curve, size, _ = _CURVES[str(crv)]
        x, y = b64u_decode(jwk.get("x"), what="jwk x"), b64u_decode(jwk.get("y"), what="jwk y")
        if len(x) != size or len(y) != size:
            raise Malformed(f"jwk coordinates must be {size} octets for {crv}")
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        except ValueError:
            raise BadPublicKey("jwk is not a point on the curve") from None
    if kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise BadPublicKey(f"OKP curve {jwk.get('crv')!r} is not supported (use Ed25519)")
        x = b64u_decode(jwk.get("x"), what="jwk x")
        if len(x) != 32:
            raise Malformed("Ed25519 jwk x must be 32 octets")
        return ed25519.Ed25519PublicKey.from_public_bytes(x)
    raise BadPublicKey(f"key type {kty!r} is not supported (use RSA, EC or OKP)")


def _required_members(jwk: dict[str, Any]) -> dict[str, Any]:
    kty = jwk.get("kty")
    names = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}.get(
        str(kty)
    )
    if names is None:
        raise BadPublicKey(f"key type {kty!r} is not supported")
    return {k: jwk[k] for k in names}


def canonical_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """The JWK reduced to its required public members (what KMI stores and compares)."""
    return _required_members(jwk)


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url."""
    body = json.dumps(_required_members(jwk), sort_keys=True, separators=(",", ":")).encode()
    return b64u_encode(hashlib.sha256(body).digest())


def key_authorization(token: str, jwk: dict[str, Any]) -> str:
    """RFC 8555 §8.1 key authorization: ``token || '.' || thumbprint``."""
    return f"{token}.{jwk_thumbprint(jwk)}"


def jwk_of(public_key: object) -> dict[str, Any]:
    """The public JWK of a key (used to compare a certificate's key with a JWS key)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return {
            "kty": "RSA",
            "n": b64u_encode(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
            "e": b64u_encode(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")),
        }
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        for crv, (curve, size, _) in _CURVES.items():
            if public_key.curve.name == curve.name:
                pn = public_key.public_numbers()
                return {
                    "kty": "EC",
                    "crv": crv,
                    "x": b64u_encode(pn.x.to_bytes(size, "big")),
                    "y": b64u_encode(pn.y.to_bytes(size, "big")),
                }
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives import serialization

        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw)}
    raise BadPublicKey(f"{type(public_key).__name__} cannot be expressed as an ACME account key")


@dataclass(frozen=True)
class JWS:
    """A parsed flattened JWS: the protected header and the decoded payload."""

    protected_b64: str
    payload_b64: str
    signature: bytes
    header: dict[str, Any]
    payload: bytes

    @property
    def alg(self) -> str:
        """The ``alg`` header."""
        return str(self.header.get("alg", ""))

    @property
    def signing_input(self) -> bytes:
        """RFC 7515 §5.1 signing input."""
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    @property
    def is_post_as_get(self) -> bool:
        """RFC 8555 §6.3: an empty payload string."""
        return self.payload_b64 == ""

    def json_payload(self) -> dict[str, Any]:
        """The payload as a JSON object (``malformed`` otherwise)."""
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            raise Malformed("payload is not JSON") from None
        if not isinstance(value, dict):
            raise Malformed("payload must be a JSON object")
        return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 7515 §5.2: a JOSE header with duplicate member names is refused (strictly, not last-wins)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise Malformed(f"duplicate member {name!r}")
        out[name] = value
    return out


def parse(body: bytes | str | dict[str, Any], *, what: str = "request") -> JWS:
    """Parse a flattened JWS JSON object; refuse the general serialization and unprotected headers."""
    if isinstance(body, dict):
        obj: object = body
    else:
        try:
            obj = json.loads(body, object_pairs_hook=_no_duplicates)
        except (ValueError, UnicodeDecodeError):
            raise Malformed(f"{what} body is not JSON") from None
    if not isinstance(obj, dict):
        raise Malformed(f"{what} must be a flattened JWS JSON object")
    if set(obj) != {"protected", "payload", "signature"}:
        raise Malformed(f"{what} must be a flattened JWS with exactly protected, payload and signature")
    protected_b64, payload_b64 = obj["protected"], obj["payload"]
    raw_header = b64u_decode(protected_b64, what="protected header")
    try:
        header = json.loads(raw_header, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("protected header is not JSON") from None
    if not isinstance(header, dict):
        raise Malformed("protected header must be a JSON object")
    if "crit" in header or "b64" in header:
        raise Malformed("protected header uses extensions KMI does not support (crit/b64)")
    return JWS(
        protected_b64=protected_b64,
        payload_b64=payload_b64 if isinstance(payload_b64, str) else "",
        signature=b64u_decode(obj["signature"], what="signature"),
        header=header,
        payload=b64u_decode(payload_b64, what="payload"),
    )


def check_header(jws: JWS, *, url: str, require_nonce: bool = True) -> None:
    """RFC 8555 §6.2: allowed alg, ``url`` equal to the request URL, ``kid`` xor ``jwk``, a nonce."""
    alg = jws.alg
    if alg not in ALLOWED_ALGORITHMS:
        raise BadSignatureAlgorithm(
            f"alg {alg or 'missing'!r} is not allowed; use one of {', '.join(ALLOWED_ALGORITHMS)}"
        )
    has_kid, has_jwk = "kid" in jws.header, "jwk" in jws.header
    if has_kid == has_jwk:
        raise Malformed("the protected header must carry exactly one of kid and jwk")
    if jws.header.get("url") != url:
        raise Unauthorized(f"the url header {jws.header.get('url')!r} is not the request URL {url!r}")
    if require_nonce and not isinstance(jws.header.get("nonce"), str):
        # RFC 8555 §6.5: a missing nonce is badNonce, like an unacceptable one.
        raise BadNonce("the protected header has no nonce")


def verify(jws: JWS, key: AccountPublicKey) -> None:
    """Verify the signature with ``key``; the alg must match the key's type and size."""
    alg, data, sig = jws.alg, jws.signing_input, jws.signature
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if alg != "RS256":
                raise BadSignatureAlgorithm(f"an RSA key signs with RS256, not {alg}")
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            crv = "P-256" if key.curve.name == "secp256r1" else "P-384"
            _, size, expected = _CURVES[crv]
            if alg != expected:
                raise BadSignatureAlgorithm(f"a {crv} key signs with {expected}, not {alg}")
            if len(sig) != 2 * size:
                raise Malformed(f"an {alg} signature is {2 * size} octets (r || s)")
            der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256() if size == 32 else hashes.SHA384()))
        else:
            if alg != "EdDSA":
                raise BadSignatureAlgorithm(f"an Ed25519 key signs with EdDSA, not {alg}")
            key.verify(sig, data)
    except InvalidSignature:
        raise Malformed("JWS signature does not verify") from None


def hmac_algorithm(alg: str) -> Any:
    """The hash of an external account binding's HMAC (RFC 8555 §7.3.4); ``BadSignatureAlgorithm``
    for anything but HS256/384/512."""
    algorithm = HMAC_ALGORITHMS.get(alg)
    if algorithm is None:
        raise BadSignatureAlgorithm(f"external account binding must use HS256/384/512, not {alg!r}")
    return algorithm


def hmac_verifies(*, alg: str, signing_input: bytes, signature: bytes, key: bytes) -> bool:
    """Whether ``signature`` is the HMAC under ``key`` of ``signing_input`` (constant time)."""
    from cryptography.hazmat.primitives import hmac as chmac

    mac = chmac.HMAC(key, hmac_algorithm(alg))
    mac.update(signing_input)
    return hmac.compare_digest(mac.finalize(), signature)


def verify_hmac(jws: JWS, key: bytes) -> None:
    """Verify an HMAC-signed JWS (only for external account binding, RFC 8555 §7.3.4)."""
    if not hmac_verifies(alg=jws.alg, signing_input=jws.signing_input, signature=jws.signature, key=key):
        raise Unauthorized("external account binding signature does not verify")
