"""SCEP messages (RFC 8894 §3): parse a pkiMessage, decrypt its envelope with the RA key (through
the KeyBackend), and build CertRep replies signed by the RA key.

``cryptography`` does the primitives (signature checks, RSA key transport, AES/3DES-CBC, PKCS#7
padding, certs-only bundles); ``asn1crypto`` reads and writes the CMS structures ``cryptography``
cannot build around a key it does not hold (SignedData signed through a KeyBackend, EnvelopedData
to a requester, SCEP's authenticated attributes).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, cms, core, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from pki.keys.base import KeyBackend
from pki.x509.der import certs_only

# RFC 8894 §3.2.1: SCEP's authenticated attributes (id-attribute arc of VeriSign).
MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
PKI_STATUS = "2.16.840.1.113733.1.9.3"
FAIL_INFO = "2.16.840.1.113733.1.9.4"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
NONCE_BYTES = 16
MAX_MESSAGE_BYTES = 64 * 1024


class MessageType(enum.IntEnum):
    """RFC 8894 §3.2.1.2 messageType."""

    CERT_REP = 3
    RENEWAL_REQ = 17
    PKCS_REQ = 19
    CERT_POLL = 20
    GET_CERT = 21
    GET_CRL = 22


class PkiStatus(enum.IntEnum):
    """RFC 8894 §3.2.1.3 pkiStatus."""

    SUCCESS = 0
    FAILURE = 2
    PENDING = 3


class FailInfo(enum.IntEnum):
    """RFC 8894 §3.2.1.4 failInfo."""

    BAD_ALG = 0
    BAD_MESSAGE_CHECK = 1
    BAD_REQUEST = 2
    BAD_TIME = 3
    BAD_CERT_ID = 4


class Unreadable(Exception):
    """The body is not a SCEP pkiMessage at all: there is no transaction to answer (HTTP 400)."""


class Refused(Exception):
    """A pkiMessage KMI answers with a CertRep FAILURE and ``fail_info``."""

    def __init__(self, fail_info: FailInfo, reason: str) -> None:
        super().__init__(reason)
        self.fail_info = fail_info


_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,  # RFC 8894 §3.5.2: still what older clients send
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# Content ciphers taken (and answered in kind). Single DES (RFC 8894 §3.5.2 calls it weak) only
# because widely deployed clients (micromdm's scepclient) send nothing else: it is 3DES with
# K1 = K2 = K3, and the envelope only hides the request from eavesdroppers.
_CIPHERS = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24, "des": 8}


@dataclass(frozen=True)
class PkiMessage:
    """A parsed, signature-checked request. ``envelope`` is the still-encrypted pkcsPKIEnvelope."""

    message_type: MessageType
    transaction_id: str
    sender_nonce: bytes
    signer: x509.Certificate
    digest: str
    envelope: bytes
    cipher: str = "aes128_cbc"  # what the requester encrypted with (answered in kind)
    signing_time: dt.datetime | None = None


def _attributes(signed_attrs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for attr in signed_attrs:
        oid = attr["type"].dotted
        values = attr["values"]
        if len(values) != 1 or oid in found:
            raise Refused(FailInfo.BAD_MESSAGE_CHECK, f"attribute {oid} must have one value")
        found[oid] = values[0]
    return found


def _native(value: Any, spec: type[core.Asn1Value], what: str, kind: str) -> Any:
    """``value`` read as ``spec`` (an attribute's single value), or ``Refused`` badRequest."""
    try:
        parsed = value if isinstance(value, spec) else value.parse(spec)
        native = parsed.native
    except (ValueError, TypeError) as exc:
        raise Refused(FailInfo.BAD_REQUEST, f"{what} is not {kind}: {exc}") from None
    if native is None:
        raise Refused(FailInfo.BAD_REQUEST, f"{what} is missing")
    return native


def _printable(value: Any, what: str) -> str:
    return str(_native(value, core.PrintableString, what, "a PrintableString"))


def _octets(value: Any, what: str) -> bytes:
    return bytes(_native(value, core.OctetString, what, "an OCTET STRING"))


def _verify(public_key: Any, signature: bytes, data: bytes, digest: hashes.HashAlgorithm) -> None:
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, asym_padding.PKCS1v15(), digest)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(digest))
        else:
            raise Refused(FailInfo.BAD_ALG, "the signer's key is neither RSA nor EC")
    except InvalidSignature:
        raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the pkiMessage signature does not verify") from None


def parse_pki_message(body: bytes) -> PkiMessage:
    """Parse and check a pkiMessage (RFC 8894 §3.2): SignedData, one signer whose certificate is
    in the message, SCEP attributes, message digest and signature. ``Unreadable`` when there is
    no transaction to answer; ``Refused`` when there is one (``.transaction`` set by the caller)."""
    if not body or len(body) > MAX_MESSAGE_BYTES:
        raise Unreadable("empty or oversized pkiMessage")
    try:
        info = cms.ContentInfo.load(body, strict=True)
        if info["content_type"].native != "signed_data":
            raise Unreadable("a pkiMessage is a CMS SignedData")
        signed = info["content"]
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise Unreadable("a pkiMessage has exactly one signer")
        signer_info = signer_infos[0]
        attrs = _attributes(signer_info["signed_attrs"])
        if TRANSACTION_ID not in attrs or MESSAGE_TYPE not in attrs:
            raise Unreadable("the pkiMessage has no transactionID or messageType")
        transaction_id = _printable(attrs[TRANSACTION_ID], "transactionID")
        if not 1 <= len(transaction_id) <= 128:
            raise Unreadable("transactionID must be 1-128 characters")
        return _checked(signed, signer_info, attrs, transaction_id)
    except RefusedMessage:
        raise
    except Refused as exc:
        raise Unreadable(str(exc)) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise Unreadable(f"not a pkiMessage: {type(exc).__name__}") from None


@dataclass(frozen=True)
class Partial:
    """What a refused message still tells: enough to address the CertRep FAILURE."""

    transaction_id: str
    sender_nonce: bytes


class RefusedMessage(Refused):
    """``Refused`` with what is needed to answer it."""

    def __init__(self, fail_info: FailInfo, reason: str, partial: Partial) -> None:
        super().__init__(fail_info, reason)
        self.partial = partial


def _checked(signed: Any, signer_info: Any, attrs: dict[str, Any], transaction_id: str) -> PkiMessage:
    nonce = b""
    try:
        nonce = _octets(attrs[SENDER_NONCE], "senderNonce") if SENDER_NONCE in attrs else b""
        if len(nonce) != NONCE_BYTES:
            raise Refused(FailInfo.BAD_REQUEST, "senderNonce must be 16 octets")
        try:
            message_type = MessageType(int(_printable(attrs[MESSAGE_TYPE], "messageType")))
        except ValueError:
            raise Refused(FailInfo.BAD_REQUEST, "unknown messageType") from None
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        if digest_name not in _DIGESTS:
            raise Refused(FailInfo.BAD_ALG, f"digest {digest_name} is not accepted (SHA-1 or SHA-2)")
        digest = _DIGESTS[digest_name]()
        signer = _signer_certificate(signed, signer_info)
        content = signed["encap_content_info"]["content"]
        envelope = b"" if content.native is None else bytes(content.native)
        declared = attrs.get("1.2.840.113549.1.9.4")
        if declared is None:
            raise Refused(FailInfo.BAD_MESSAGE_CHECK, "no messageDigest attribute")
        actual = hashes.Hash(digest)
        actual.update(envelope)
        if _octets(declared, "messageDigest") != actual.finalize():
            raise Refused(FailInfo.BAD_MESSAGE_CHECK, "messageDigest does not match the content")
        # RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF.
        signed_attrs = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        _verify(signer.public_key(), signer_info["signature"].native, signed_attrs, digest)
        cipher = _envelope_cipher(envelope) if envelope else "aes128_cbc"
        when = attrs.get("1.2.840.113549.1.9.5")
        signing_time = None
        if when is not None:
            signing_time = (when if isinstance(when, cms.Time) else when.parse(cms.Time)).native
    except RefusedMessage:
        raise
    except Refused as exc:
        raise RefusedMessage(exc.fail_info, str(exc), Partial(transaction_id, nonce)) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        reason = f"the pkiMessage does not parse: {type(exc).__name__}"
        raise RefusedMessage(FailInfo.BAD_REQUEST, reason, Partial(transaction_id, nonce)) from None
    return PkiMessage(
        message_type=message_type,
        transaction_id=transaction_id,
        sender_nonce=nonce,
        signer=signer,
        digest=digest_name,
        envelope=envelope,
        cipher=cipher,
        signing_time=signing_time if isinstance(signing_time, dt.datetime) else None,
    )


def _signer_certificate(signed: Any, signer_info: Any) -> x509.Certificate:
    sid = signer_info["sid"]
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            match = (
                cert.issuer == sid.chosen["issuer"]
                and cert.serial_number == sid.chosen["serial_number"].native
            )
        else:
            match = cert.key_identifier == sid.chosen.native
        if match:
            try:
                return x509.load_der_x509_certificate(cert.dump())
            except ValueError:
                break
    raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the signer's certificate is not in the pkiMessage")


def _envelope_cipher(envelope: bytes) -> str:
    info = cms.ContentInfo.load(envelope)
    name = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native
    return str(name)


def decrypt_envelope(
    envelope: bytes, *, backend: KeyBackend, handle: str, recipient: x509.Certificate
) -> bytes:
    """Open a pkcsPKIEnvelope (EnvelopedData, RSA key transport to the RA certificate) with the RA
    key in its backend; return the content (a PKCS#10, IssuerAndSubject, IssuerAndSerialNumber)."""
    try:
        info = cms.ContentInfo.load(envelope, strict=True)
        if info["content_type"].native != "enveloped_data":
            raise Refused(FailInfo.BAD_REQUEST, "the pkcsPKIEnvelope is not EnvelopedData")
        enveloped = info["content"]
        wrapped = _wrapped_key(enveloped, recipient)
        eci = enveloped["encrypted_content_info"]
        algorithm = eci["content_encryption_algorithm"]
        name = algorithm["algorithm"].native
        if name not in _CIPHERS:
            raise Refused(
                FailInfo.BAD_ALG, f"content encryption {name} is not accepted (AES-CBC, 3DES or DES)"
            )
        iv = algorithm["parameters"].native
        ciphertext = _encrypted_content(eci.contents)
        if not isinstance(iv, bytes) or not isinstance(ciphertext, bytes):
            raise Refused(FailInfo.BAD_REQUEST, "the envelope has no IV or no content")
    except Refused:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise Refused(
            FailInfo.BAD_REQUEST, f"the pkcsPKIEnvelope does not parse: {type(exc).__name__}"
        ) from None
    from pki.exceptions import KeyBackendError

    try:
        key = backend.decrypt(handle, wrapped)
    except KeyBackendError:
        raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the envelope's key does not decrypt") from None
    return _cbc_decrypt(name, key, iv, ciphertext)


def _tlvs(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The (class, constructed, tag, contents) of each BER value in ``data``."""
    found, pointer, depth = [], 0, 0
    while pointer < len(data) and depth < 10_000:
        cls, method, tag, header, contents, trailer = parser.parse(data[pointer:])
        found.append((cls, method, tag, contents))
        pointer += len(header) + len(contents) + len(trailer)
        depth += 1
    return found


def _octets_of(contents: bytes, constructed: int, nesting: int = 0) -> bytes:
    """An OCTET STRING's bytes, also in BER's constructed (chunked) form, which some clients
    (Go's pkcs7) send for encryptedContent."""
    if not constructed:
        return contents
    if nesting > 8:
        raise ValueError("OCTET STRING nested too deeply")
    chunks = []
    for cls, method, tag, inner in _tlvs(contents):
        if cls != 0 or tag != 4:
            raise ValueError("a constructed OCTET STRING holds OCTET STRINGs only")
        chunks.append(_octets_of(inner, method, nesting + 1))
    return b"".join(chunks)


def _encrypted_content(eci_contents: bytes) -> bytes | None:
    """encryptedContent ([0] IMPLICIT OCTET STRING) of an EncryptedContentInfo's contents."""
    for cls, method, tag, contents in _tlvs(eci_contents):
        if cls == 2 and tag == 0:
            return _octets_of(contents, method)
    return None


def _wrapped_key(enveloped: Any, recipient: x509.Certificate) -> bytes:
    """The encrypted content key of the RSA key-transport recipient that is the RA certificate."""
    for choice in enveloped["recipient_infos"]:
        if choice.name != "ktri":
            continue
        ktri = choice.chosen
        rid = ktri["rid"]
        if rid.name == "issuer_and_serial_number" and not (
            rid.chosen["serial_number"].native == recipient.serial_number
            and rid.chosen["issuer"].dump() == recipient.issuer.public_bytes()
        ):
            continue  # another recipient (a subjectKeyIdentifier: trying our key is the check)
        if ktri["key_encryption_algorithm"]["algorithm"].native != "rsaes_pkcs1v15":
            raise Refused(FailInfo.BAD_ALG, "key transport must be rsaEncryption (PKCS#1 v1.5)")
        return bytes(ktri["encrypted_key"].native)
    raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the envelope is not addressed to this RA certificate")


def _block_cipher(name: str, key: bytes) -> algorithms.AES | TripleDES:
    if len(key) != _CIPHERS[name]:
        raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the content key has the wrong length")
    if name == "des":
        return TripleDES(key * 3)  # single DES is 3DES with K1 = K2 = K3
    return TripleDES(key) if name == "tripledes_3key" else algorithms.AES(key)


def _cbc_decrypt(name: str, key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    cipher = _block_cipher(name, key)
    block = cipher.block_size // 8
    if len(iv) != block or not ciphertext or len(ciphertext) % block:
        raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the envelope's IV or content length is wrong")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(cipher.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise Refused(FailInfo.BAD_MESSAGE_CHECK, "the envelope does not decrypt (bad padding)") from None


# --- replies --------------------------------------------------------------------------------------


def envelope_for(content: bytes, recipient: x509.Certificate, *, cipher: str) -> bytes:
    """EnvelopedData of ``content`` for ``recipient`` (RSA key transport), in the cipher the
    requester used (AES-128-CBC when it used one KMI would not answer with)."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise Refused(FailInfo.BAD_ALG, "KMI can only encrypt the reply to an RSA key (RFC 8894 §2.1)")
    name = cipher if cipher in _CIPHERS else "aes128_cbc"
    key = os.urandom(_CIPHERS[name])
    block_cipher = _block_cipher(name, key)
    iv = os.urandom(block_cipher.block_size // 8)
    padder = padding.PKCS7(block_cipher.block_size).padder()
    encryptor = Cipher(block_cipher, modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(content) + padder.finalize()) + encryptor.finalize()
    asn1_cert = asn1_x509.Certificate.load(recipient.public_bytes(Encoding.DER))
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [
                cms.RecipientInfo(
                    name="ktri",
                    value=cms.KeyTransRecipientInfo(
                        {
                            "version": "v0",
                            "rid": cms.RecipientIdentifier(
                                name="issuer_and_serial_number",
                                value=cms.IssuerAndSerialNumber(
                                    {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
                                ),
                            ),
                            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
                            "encrypted_key": public_key.encrypt(key, asym_padding.PKCS1v15()),
                        }
                    ),
                )
            ],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": algos.EncryptionAlgorithm(
                    {"algorithm": name, "parameters": iv}
                ),
                "encrypted_content": ciphertext,
            },
        }
    )
    return bytes(cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump())


def degenerate(
    certificates: list[x509.Certificate] = [],  # noqa: B006 - read only
    crls: list[bytes] = [],  # noqa: B006 - read only
) -> bytes:
    """A certs-only (and CRLs-only) SignedData without signers (RFC 8894 §3.4)."""
    return certs_only([c.public_bytes(Encoding.DER) for c in certificates], crls)


def _attr(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def cert_rep(
    *,
    transaction_id: str,
    recipient_nonce: bytes,
    status: PkiStatus,
    signer: x509.Certificate,
    backend: KeyBackend,
    handle: str,
    fail_info: FailInfo | None = None,
    envelope: bytes = b"",
) -> bytes:
    """A CertRep (RFC 8894 §3.3.2) signed with the RA key through its backend (SHA-256)."""
    digest = hashlib.sha256(envelope).digest()
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
        _attr(MESSAGE_TYPE, core.PrintableString(str(int(MessageType.CERT_REP)))),
        _attr(PKI_STATUS, core.PrintableString(str(int(status)))),
        _attr(TRANSACTION_ID, core.PrintableString(transaction_id)),
        _attr(SENDER_NONCE, core.OctetString(os.urandom(NONCE_BYTES))),
    ]
    if recipient_nonce:
        attrs.append(_attr(RECIPIENT_NONCE, core.OctetString(recipient_nonce)))
    if fail_info is not None:
        attrs.append(_attr(FAIL_INFO, core.PrintableString(str(int(fail_info)))))
    signed_attrs = cms.CMSAttributes(attrs)
    signature = backend.sign_data(handle, signed_attrs.dump(), hashes.SHA256())
    asn1_signer = asn1_x509.Certificate.load(signer.public_bytes(Encoding.DER))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": asn1_signer.issuer, "serial_number": asn1_signer.serial_number}
                ),
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        }
    )
    encap: dict[str, Any] = {"content_type": "data"}
    if envelope:
        encap["content"] = envelope
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": encap,
            "certificates": [asn1_signer],
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


@dataclass(frozen=True)
class IssuerAndSerial:
    """GetCert / GetCRL content (RFC 8894 §3.3.4): an issuer name and a serial number."""

    issuer: bytes  # DER of the Name
    serial: int


def issuer_and_serial(content: bytes) -> IssuerAndSerial:
    """Parse IssuerAndSerialNumber; ``Refused(badRequest)`` when it does not parse."""
    try:
        parsed = cms.IssuerAndSerialNumber.load(content, strict=True)
        return IssuerAndSerial(parsed["issuer"].dump(), int(parsed["serial_number"].native))
    except (ValueError, TypeError, KeyError) as exc:
        raise Refused(
            FailInfo.BAD_REQUEST, f"IssuerAndSerialNumber does not parse: {type(exc).__name__}"
        ) from None


class _IssuerAndSubject(core.Sequence):  # type: ignore[misc]
    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def issuer_and_subject(content: bytes) -> tuple[bytes, bytes]:
    """Parse CertPoll's IssuerAndSubject (RFC 8894 §3.3.3): DER of both names."""
    try:
        parsed = _IssuerAndSubject.load(content, strict=True)
        return parsed["issuer"].dump(), parsed["subject"].dump()
    except (ValueError, TypeError, KeyError) as exc:
        raise Refused(
            FailInfo.BAD_REQUEST, f"IssuerAndSubject does not parse: {type(exc).__name__}"
        ) from None
