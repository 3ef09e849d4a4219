"""Certificate builders: pure functions from policy decisions to a ``CertificateBuilder``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID

from pki.locations import ca_certificate_url, crl_url, ocsp_url
from pki.x509.names import SAN

# RFC 5280 §4.2.1.3: the keyUsage of every CA certificate KMI makes or asks for (keyCertSign,
# cRLSign, digitalSignature), always critical.
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _ski_of(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def distribution_extensions(
    issuer_ca_name: str, *, crl_shard: int | None = None
) -> list[x509.Extension[x509.ExtensionType]]:
    """CRL Distribution Points and AIA (caIssuers, OCSP) naming the issuing CA's repository."""
    cdp = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url(issuer_ca_name, crl_shard))],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(ocsp_url(issuer_ca_name)),
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(ca_certificate_url(issuer_ca_name)),
            ),
        ]
    )
    return [x509.Extension(cdp.oid, False, cdp), x509.Extension(aia.oid, False, aia)]


def _extension(value: x509.ExtensionType, *, critical: bool) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(value.oid, critical, value)


def _base(
    *,
    subject: x509.Name,
    issuer_name: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: list[x509.Extension[x509.ExtensionType]],
) -> x509.CertificateBuilder:
    """The builder with the SKI first, then ``extensions`` (each type once: built here, they are
    handed over whole rather than added one by one, which copies the builder and compares every
    extension with the ones before it each time)."""
    ski = _extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    return (
        x509.CertificateBuilder(extensions=[ski, *extensions])
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def ca_certificate_builder(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
    name_constraints: x509.NameConstraints | None,
    issuer: x509.Certificate | None,
    issuer_ca_name: str | None,
) -> x509.CertificateBuilder:
    """Builder for a root (``issuer`` None: self-signed) or intermediate CA certificate."""
    # RFC 5280 §4.2.1.9 and §4.2.1.3: CA certs carry critical basicConstraints and keyUsage.
    if issuer is None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            x509.SubjectKeyIdentifier.from_public_key(public_key)
        )
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski_of(issuer))
    extensions = [
        _extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True),
        _extension(CA_KEY_USAGE, critical=True),
        _extension(aki, critical=False),
    ]
    if name_constraints is not None:
        extensions.append(_extension(name_constraints, critical=True))
    if issuer_ca_name is not None:
        extensions += distribution_extensions(issuer_ca_name)
    return _base(
        subject=subject,
        issuer_name=issuer.subject if issuer is not None else subject,
        public_key=public_key,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
    )


def end_entity_builder(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer: x509.Certificate,
    issuer_ca_name: str,
    key_usage: x509.KeyUsage | None,
    extended_key_usage: x509.ExtendedKeyUsage | None,
    sans: Sequence[SAN],
    ocsp_no_check: bool = False,
    crl_shard: int | None = None,
) -> x509.CertificateBuilder:
    """Builder for an end-entity certificate."""
    extensions = [
        _extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski_of(issuer)), critical=False
        ),
        _extension(x509.BasicConstraints(ca=False, path_length=None), critical=True),
    ]
    if key_usage is not None:
        extensions.append(_extension(key_usage, critical=True))
    if extended_key_usage is not None:
        extensions.append(_extension(extended_key_usage, critical=False))
    if sans:
        # RFC 5280 §4.2.1.6: the SAN is critical when the subject is empty.
        extensions.append(
            _extension(
                x509.SubjectAlternativeName([s.general_name() for s in sans]), critical=not list(subject)
            )
        )
    if ocsp_no_check:
        extensions.append(_extension(x509.OCSPNoCheck(), critical=False))
    else:
        extensions += distribution_extensions(issuer_ca_name, crl_shard=crl_shard)
    return _base(
        subject=subject,
        issuer_name=issuer.subject,
        public_key=public_key,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
    )


# PKCS#9 extensionRequest (RFC 2985 §5.4.2): the extensions a CSR asks the issuer for.
_OID_EXTENSION_REQUEST = bytes.fromhex("06092a864886f70d01090e")  # 1.2.840.113549.1.9.14
_EXTENSION_OIDS = {
    x509.BasicConstraints: bytes.fromhex("0603551d13"),  # 2.5.29.19
    x509.KeyUsage: bytes.fromhex("0603551d0f"),  # 2.5.29.15
    x509.NameConstraints: bytes.fromhex("0603551d1e"),  # 2.5.29.30
    x509.SubjectKeyIdentifier: bytes.fromhex("0603551d0e"),  # 2.5.29.14
}


def ca_request_info(
    *,
    subject: x509.Name,
    spki_der: bytes,
    path_length: int | None,
    name_constraints: x509.NameConstraints | None,
    public_key: CertificatePublicKeyTypes,
) -> bytes:
    """The DER CertificationRequestInfo (RFC 2986 §4.1) of a CA asking for its certificate.

    Encoded here rather than by ``cryptography``, which signs a request only with a private key
    it holds: KMI signs these bytes through the key's backend (an HSM key never leaves it). The
    extensionRequest asks for what ``ca_certificate_builder`` writes: critical basicConstraints
    (cA, pathLen), critical keyUsage (keyCertSign, cRLSign, digitalSignature), the SKI, and the
    name constraints if any.
    """
    from pki.x509 import der

    extensions: list[x509.ExtensionType] = [
        x509.BasicConstraints(ca=True, path_length=path_length),
        CA_KEY_USAGE,
        x509.SubjectKeyIdentifier.from_public_key(public_key),
    ]
    if name_constraints is not None:
        extensions.append(name_constraints)
    encoded = der.sequence(
        *(
            der.extension(
                _EXTENSION_OIDS[type(ext)],
                ext.public_bytes(),
                critical=not isinstance(ext, x509.SubjectKeyIdentifier),
            )
            for ext in extensions
        )
    )
    attribute = der.sequence(_OID_EXTENSION_REQUEST, der.tlv(0x31, encoded))  # SET OF one value
    return der.sequence(
        der.integer(0),  # version v1
        subject.public_bytes(),
        spki_der,
        der.tlv(0xA0, attribute),  # attributes [0] IMPLICIT SET OF Attribute
    )
