"""A small SCEP client for in-process tests: builds signed, enveloped pkiMessages and opens
CertReps (the interop tests use micromdm's scepclient)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import AttributeOID

from pki.scep import messages as m


def self_signed(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str = "SCEP SIGNER"
) -> x509.Certificate:
    """The throwaway certificate a device signs its first request with (RFC 8894 §2.3)."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def csr_der(key: rsa.RSAPrivateKey, subject: str, challenge: str = "") -> bytes:
    """A PKCS#10 with an optional challengePassword attribute."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    )
    if challenge:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _attr(oid: str, value: Any) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def pki_message(
    *,
    message_type: int,
    transaction_id: str,
    content: bytes,
    recipient: x509.Certificate,
    signer: x509.Certificate,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    cipher: str = "aes128_cbc",
    nonce: bytes | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """A pkiMessage: ``content`` enveloped to ``recipient`` (the RA) and signed by ``key``."""
    envelope = m.envelope_for(content, recipient, cipher=cipher)
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(envelope).digest()]}),
        _attr(m.MESSAGE_TYPE, core.PrintableString(str(message_type))),
        _attr(m.TRANSACTION_ID, core.PrintableString(transaction_id)),
        _attr(m.SENDER_NONCE, core.OctetString(nonce if nonce is not None else os.urandom(16))),
    ]
    if signing_time is not None:
        attrs.append(
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time(name="utc_time", value=signing_time)]}
            )
        )
    signed_attrs = cms.CMSAttributes(attrs)
    if isinstance(key, rsa.RSAPrivateKey):
        signature, algorithm = (
            key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256()),
            "rsassa_pkcs1v15",
        )
    else:
        signature, algorithm = key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
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
            "signature_algorithm": {"algorithm": algorithm},
            "signature": signature,
        }
    )
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data", "content": envelope},
            "certificates": [asn1_signer],
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


@dataclass(frozen=True)
class CertRep:
    """What a CertRep says."""

    status: int
    fail_info: int | None
    transaction_id: str
    recipient_nonce: bytes
    certificates: list[x509.Certificate]
    crls: list[bytes]


def read_cert_rep(
    reply: bytes, *, ra: x509.Certificate, recipient: x509.Certificate, key: rsa.RSAPrivateKey
) -> CertRep:
    """Check the RA's signature on a CertRep and open its envelope with ``key``."""
    info = cms.ContentInfo.load(reply)
    signed = info["content"]
    signer_info = signed["signer_infos"][0]
    data = b"\x31" + signer_info["signed_attrs"].dump()[1:]
    ra.public_key().verify(signer_info["signature"].native, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg,arg-type]
    attrs = {a["type"].dotted: a["values"][0] for a in signer_info["signed_attrs"]}
    status = int(attrs[m.PKI_STATUS].parse(core.PrintableString).native)
    fail = attrs.get(m.FAIL_INFO)
    certs: list[x509.Certificate] = []
    crls: list[bytes] = []
    content = signed["encap_content_info"]["content"]
    if content.native:
        inner = pkcs7.pkcs7_decrypt_der(bytes(content.native), recipient, key, [])
        degenerate = cms.ContentInfo.load(inner)["content"]
        certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in degenerate["certificates"] or []]
        crls = [c.chosen.dump() for c in degenerate["crls"] or []]
    return CertRep(
        status=status,
        fail_info=int(fail.parse(core.PrintableString).native) if fail is not None else None,
        transaction_id=attrs[m.TRANSACTION_ID].parse(core.PrintableString).native,
        recipient_nonce=attrs[m.RECIPIENT_NONCE].parse(core.OctetString).native,
        certificates=certs,
        crls=crls,
    )
