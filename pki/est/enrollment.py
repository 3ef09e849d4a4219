"""EST operations (RFC 7030 §4): authenticate a device, then enroll, re-enroll or have KMI make
the key — through the same use cases as the REST API (``pki.enrollment.enroll``,
``pki.issuance.submit_and_issue`` and ``pki.renewal.renew``), so profile policy, approval, audit
and signing apply.

The audit actor names the protocol, the label and the authenticated device:
``est:<label>/code:<code id>`` or ``est:<label>/cert:<SHA-256 of the client certificate>``.

Enrollment with a one-time code has a fast path (``_enroll_in_one_statement``): on PostgreSQL,
signing in process, for a profile that needs no approval, the code's claim joins the REST fast
path's one issuance statement (``pki.recording.Guard``), and the code lookup reads the CA and
profile stamps of ``pki.enrollment``'s per-process cache. It may never diverge from the general
path (``_enroll_in_transaction``: ``enroll`` and the claim in one transaction) in the rows
written (request, certificate, the code's ``used_at`` and ``request``), the audit events, the
refusals (blocklist, policy, a code used once: nothing written) or the answer;
tests/pki/test_est_fast_path.py runs the two side by side.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from dataclasses import dataclass

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurveOID
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AttributeOID, PublicKeyAlgorithmOID, SignatureAlgorithmOID
from django.db import connection, transaction
from django.db.models import F

from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.conf import pki_settings
from pki.enrollment import (
    CA_STAMP_JOINS,
    CA_STAMP_SQL,
    PROFILE_STAMP_SQL,
    Enrollment,
    enroll,
    issue_approved,
    load_targets,
    targets_from_stamps,
)
from pki.exceptions import InvalidCSR, NotAuthenticated, PolicyViolation
from pki.issuance import parse_csr, submit_and_issue, submit_request
from pki.keys import generate_private_key, signature_hash
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.device import EnrollmentCode, EstLabel
from pki.models.key import KeyType
from pki.models.request import CertificateRequest, RequestState
from pki.recording import UNBLOCKED, Guard, GuardRefused, execute_prepared
from pki.renewal import Renewal, renew
from pki.signing import signs_here
from pki.x509.csr import CheckedCSR

from .labels import secret_matches

CERT_ID_CHARS = 16  # of the client certificate's SHA-256 in the audit actor (64 bits)


@dataclass(frozen=True)
class Device:
    """Who is asking: an enrollment code (``code``) or a TLS client certificate (``certificate``)."""

    label: EstLabel
    code: EnrollmentCode | None = None
    certificate: Certificate | None = None

    @property
    def actor(self) -> str:
        """The audit actor: protocol, label and device."""
        if self.code is not None:
            return f"est:{self.label.name}/code:{self.code.id}"
        assert self.certificate is not None
        return f"est:{self.label.name}/cert:{self.certificate.fingerprint_sha256[:CERT_ID_CHARS]}"


def authenticate_code(
    *, label_name: str | None, code_id: str, secret: str, now: dt.datetime | None = None
) -> Device:
    """The device holding enrollment code ``code_id`` of label ``label_name`` (None: the default
    label), or ``NotAuthenticated``. One query finds the code, its label and the stamps of its
    CA and profile, which come from ``pki.enrollment``'s per-process cache while unchanged.

    A used code still authenticates the repeat of the request it was used for (RFC 7030 §4.2.3);
    ``simple_enroll`` checks that the repeat is the same key.
    """
    now = resolve(now)
    code = _load_code(label_name, code_id[:32])
    if code is None or not secret_matches(code.secret_sha256, secret):
        raise NotAuthenticated("unknown enrollment code or wrong password")
    if code.used_at is None and code.not_after <= now:
        raise NotAuthenticated(f"enrollment code {code.id} expired at {code.not_after.isoformat()}")
    stamps: tuple[list[str], list[str]] | None = getattr(code, "stamps", None)
    if stamps is None:
        ca, profile = load_targets(ca_name=code.ca_name, profile_name=code.profile_name)  # type: ignore[attr-defined]
    else:
        ca, profile = targets_from_stamps(
            ca_name=code.ca_name,  # type: ignore[attr-defined]
            profile_name=code.profile_name,  # type: ignore[attr-defined]
            ca_stamp=stamps[0],
            profile_stamp=stamps[1],
        )
    if ca is None or profile is None:
        raise NotAuthenticated("the label's CA or profile is gone")
    label = code.label
    label.ca, label.profile = ca, profile
    return Device(label=label, code=code)


_CODE_FIELDS = list(EnrollmentCode._meta.concrete_fields)
_LABEL_FIELDS = list(EstLabel._meta.concrete_fields)
_COLUMNS = ", ".join([*(f"ec.{f.column}" for f in _CODE_FIELDS), *(f"l.{f.column}" for f in _LABEL_FIELDS)])
# The hot lookup of every code-authenticated request: the code, its label, the names of the
# label's CA and profile and their cache stamps (pki.enrollment) in one prepared statement.
_CODE_SQL = f"""
SELECT {_COLUMNS}, ca.name, p.name, {CA_STAMP_SQL}, {PROFILE_STAMP_SQL}
  FROM pki_enrollmentcode ec
  JOIN pki_estlabel l ON l.id = ec.label_id
  JOIN pki_certificateauthority ca ON ca.id = l.ca_id {CA_STAMP_JOINS}
  JOIN pki_profile p ON p.id = l.profile_id
 WHERE ec.id = %(code)s AND l.enabled
   AND (l.name = %(label)s OR (%(label)s::text IS NULL AND l.is_default))
"""  # noqa: S608 - the columns are the models' own; every value is a bound parameter
_CLAIM_SQL = """
UPDATE pki_enrollmentcode SET used_at = %(now)s, request_id = %(request)s
 WHERE id = %(code)s AND used_at IS NULL RETURNING id
"""
# The same claim as the guard of the one issuance statement: its time is the events' timestamp
# (``now``), its request the one the statement inserts.
# (Like every guard it runs whatever the statement writes: it claims nothing for a blocked key.
# Constant SQL; the values are bound parameters.)
_CLAIM_GUARD = (
    "guard AS (UPDATE pki_enrollmentcode SET used_at = %(timestamp)s, request_id = %(c_request_id)s"  # noqa: S608
    f" WHERE id = %(g_code)s AND used_at IS NULL AND {UNBLOCKED} RETURNING id),\n"
)


def _load_code(label_name: str | None, code_id: str) -> EnrollmentCode | None:
    """The code ``code_id`` of an enabled label (by name, or the default one), its label loaded
    and ``ca_name``/``profile_name`` set."""
    if connection.vendor != "postgresql":
        where = {"label__name": label_name} if label_name is not None else {"label__is_default": True}
        return (
            EnrollmentCode.objects.select_related("label")
            .annotate(ca_name=F("label__ca__name"), profile_name=F("label__profile__name"))
            .filter(pk=code_id, label__enabled=True, **where)
            .first()
        )
    row = execute_prepared(_CODE_SQL, {"code": code_id, "label": label_name})
    if row is None:
        return None
    n, m = len(_CODE_FIELDS), len(_LABEL_FIELDS)
    code = EnrollmentCode.from_db(connection.alias, [f.attname for f in _CODE_FIELDS], row[:n])
    code.label = EstLabel.from_db(connection.alias, [f.attname for f in _LABEL_FIELDS], row[n : n + m])
    code.ca_name, code.profile_name = row[n + m], row[n + m + 1]  # type: ignore[attr-defined]
    code.stamps = (row[n + m + 2], row[n + m + 3])  # type: ignore[attr-defined]
    return code


def _claim(code: EnrollmentCode, request: CertificateRequest, now: dt.datetime) -> bool:
    """Mark ``code`` used by ``request``, unless another request used it first."""
    if connection.vendor != "postgresql":
        return bool(
            EnrollmentCode.objects.filter(pk=code.pk, used_at__isnull=True).update(
                used_at=now, request=request
            )
        )
    return execute_prepared(_CLAIM_SQL, {"now": now, "request": request.pk, "code": code.pk}) is not None


def authenticate_certificate(
    *, label: EstLabel, der: bytes, renewal: bool = False, now: dt.datetime | None = None
) -> Device:
    """The device presenting TLS client certificate ``der`` (verified by the TLS terminator): a
    certificate KMI issued, unrevoked and valid now, from a CA the label trusts — or, to
    re-enroll (``renewal``), from the label's own CA."""
    now = resolve(now)
    try:
        presented = x509.load_der_x509_certificate(der)
    except ValueError:
        raise NotAuthenticated("the client certificate does not parse") from None
    from cryptography.hazmat.primitives import hashes

    fingerprint = presented.fingerprint(hashes.SHA256()).hex()
    row = Certificate.objects.filter(fingerprint_sha256=fingerprint).select_related("ca", "profile").first()
    if row is None or row.ca is None:
        raise NotAuthenticated("the client certificate was not issued by KMI")
    trusted: set[int] = set(label.client_cas.values_list("pk", flat=True))
    if renewal:
        trusted.add(label.ca_id)
    if row.ca_id not in trusted:
        raise NotAuthenticated(f"label {label.name} does not trust certificates of CA {row.ca.name}")
    if row.revoked_at is not None:
        raise NotAuthenticated(f"the client certificate {row.serial} is revoked")
    if not row.not_before <= now < row.not_after:
        raise NotAuthenticated(f"the client certificate {row.serial} is not valid now")
    return Device(label=label, certificate=row)


def ca_certificates(label: EstLabel) -> list[x509.Certificate]:
    """The label CA's chain up to its root: the ``cacerts`` answer (RFC 7030 §4.1.3)."""
    chain: list[x509.Certificate] = []
    ca: CertificateAuthority | None = label.ca
    while ca is not None and len(chain) < 16:
        chain.append(ca.x509_certificate())
        ca = ca.parent
    return chain


def _check_csr(csr: bytes, tls_unique: bytes | None = None) -> CheckedCSR:
    checked = parse_csr(csr)
    check_channel_binding(checked, tls_unique)
    return checked


def check_channel_binding(csr: CheckedCSR, tls_unique: bytes | None) -> None:
    """RFC 7030 §3.5: a CSR whose challengePassword carries the tls-unique value (base64) is
    bound to the TLS connection that sent it; refuse it on another. ``tls_unique`` is None where
    KMI does not see the TLS session (TLS 1.3 has no tls-unique; a proxy terminates TLS)."""
    if tls_unique is None:
        return
    try:
        value = csr.csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return
    if value != base64.b64encode(tls_unique):
        raise NotAuthenticated("the CSR's tls-unique does not match this TLS connection (RFC 7030 §3.5)")


def simple_enroll(
    *, device: Device, csr: bytes, tls_unique: bytes | None = None, now: dt.datetime | None = None
) -> Enrollment:
    """Enroll ``csr`` for an authenticated device (RFC 7030 §4.2.1).

    With an enrollment code: the code is used up by the request it stores (both or neither);
    the same code and key again answer with that request's outcome (issued, or still pending).
    """
    now = resolve(now)
    label = device.label
    checked = _check_csr(csr, tls_unique)
    if device.code is None:
        return enroll(ca=label.ca, profile=label.profile, csr=checked, actor=device.actor, now=now)
    code = device.code
    if code.used_at is None:
        claimed = _enroll_in_one_statement if _one_statement(label) else _enroll_in_transaction
        # Of two requests racing with one code, the loser wrote nothing: it answers as a repeat.
        with contextlib.suppress(_CodeTaken, GuardRefused):
            return claimed(device=device, code=code, checked=checked, now=now)
    code = EnrollmentCode.objects.select_related("request").get(pk=code.pk)
    return _repeat(code=code, checked=checked, actor=device.actor)


def _one_statement(label: EstLabel) -> bool:
    """Whether an enrollment of ``label`` takes the one-statement path."""
    return connection.vendor == "postgresql" and signs_here() and not label.profile.policy().requires_approval


def _enroll_in_one_statement(
    *, device: Device, code: EnrollmentCode, checked: CheckedCSR, now: dt.datetime
) -> Enrollment:
    """The request, its certificate, both audit events and the code's claim in one statement."""
    label = device.label
    request, certificate = submit_and_issue(
        ca=label.ca,
        profile=label.profile,
        csr=checked,
        actor=device.actor,
        now=now,
        guard=Guard(_CLAIM_GUARD, {"g_code": code.pk}),
    )
    return Enrollment(request=request, certificate=certificate)


def _enroll_in_transaction(
    *, device: Device, code: EnrollmentCode, checked: CheckedCSR, now: dt.datetime
) -> Enrollment:
    """Store the request and claim the code in one transaction; issue in it too when signing in
    process, else after it commits, on a signing worker (which sees only committed requests)."""
    label, actor = device.label, device.actor
    # Before the transaction, so that a refusal's audit event is kept.
    ensure_not_blocked(
        public_key=checked.public_key,
        spki_sha256=checked.key_fingerprint,
        actor=actor,
        path="submit_request",
        now=now,
    )
    if signs_here():
        with transaction.atomic():
            _hold(code)
            done = enroll(ca=label.ca, profile=label.profile, csr=checked, actor=actor, now=now)
            if not _claim(code, done.request, now):  # pragma: no cover - held above
                raise _CodeTaken
        return done
    with transaction.atomic():
        _hold(code)
        request = submit_request(ca=label.ca, profile=label.profile, csr=checked, actor=actor, now=now)
        if not _claim(code, request, now):  # pragma: no cover - held above
            raise _CodeTaken
    return Enrollment(request=request, certificate=issue_approved(request, actor=actor))


def _hold(code: EnrollmentCode) -> None:
    """Lock the unused code for this transaction, first (``_CodeTaken`` when another request used
    it): of two requests racing with one code the second waits here, then signs nothing; and the
    code is locked before the audit stream, in the order of the one-statement path (its claim
    is the statement's first CTE), so the two paths never wait for each other crosswise."""
    if not EnrollmentCode.objects.select_for_update().filter(pk=code.pk, used_at__isnull=True).exists():
        raise _CodeTaken


class _CodeTaken(Exception):
    """Another request used the code first (rolls back this one's issuance)."""


def _repeat(*, code: EnrollmentCode, checked: CheckedCSR, actor: str) -> Enrollment:
    """The outcome of the request a used code stored, for the same key only."""
    request = code.request
    if request is None or request.key_fingerprint != checked.key_fingerprint:
        raise NotAuthenticated(f"enrollment code {code.id} is used")
    if request.state == RequestState.REJECTED:
        raise PolicyViolation(f"request {request.pk} was rejected: {request.reason}")
    return Enrollment(request=request, certificate=issue_approved(request, actor=actor))


def simple_reenroll(
    *, device: Device, csr: bytes, tls_unique: bytes | None = None, now: dt.datetime | None = None
) -> Renewal:
    """Re-enroll the certificate the device authenticated with (RFC 7030 §4.2.2): the CSR keeps
    its subject and names (a new key is allowed); ``pki.renewal.renew`` issues the successor, or
    submits it for review when the profile needs approval."""
    now = resolve(now)
    old = device.certificate
    if old is None:
        raise NotAuthenticated("re-enrollment is authenticated by the certificate being renewed")
    if old.ca_id != device.label.ca_id:
        raise NotAuthenticated(f"certificate {old.serial} was not issued by label {device.label.name}'s CA")
    checked = _check_csr(csr, tls_unique)
    if checked.subject != old.x509().subject:
        # RFC 7030 §4.2.2: "the Subject field ... MUST be identical to the corresponding field
        # in the certificate being renewed".
        raise PolicyViolation(
            f"re-enrollment must keep the subject {old.subject!r}, not {checked.subject.rfc4514_string()!r}"
        )
    return renew(certificate=old, csr=checked.csr, actor=device.actor, now=now)


# RFC 7030 §4.4: KMI makes the key; the CSR's key only says which type (and proves nothing).
_KEY_TYPE_FOR = {
    KeyType.RSA_3072: KeyType.RSA_3072,
    KeyType.RSA_4096: KeyType.RSA_3072,  # generating RSA-4096 ties up a web worker for seconds
}


@dataclass(frozen=True)
class ServerKeyEnrollment:
    """A server-generated key (never stored by KMI) and the enrollment of its certificate."""

    private_key: CertificateIssuerPrivateKeyTypes
    enrollment: Enrollment

    def pkcs8_der(self) -> bytes:
        """The key as unencrypted PKCS#8 DER (RFC 7030 §4.4.2 ``application/pkcs8``)."""
        return self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def server_keygen(*, device: Device, csr: bytes, now: dt.datetime | None = None) -> ServerKeyEnrollment:
    """RFC 7030 §4.4: generate a key of the CSR's type, certify it with the CSR's subject and
    extensions, return both. Only where the label allows it: the key leaves KMI once, as
    PKCS#8 over the TLS channel, and KMI keeps no copy."""
    now = resolve(now)
    if not device.label.serverkeygen:
        raise PolicyViolation(
            f"label {device.label.name} does not generate keys (create_est_label --serverkeygen)"
        )
    checked = _check_csr(csr)
    key_type = _KEY_TYPE_FOR.get(checked.key_type, checked.key_type)
    private_key = generate_private_key(key_type)
    builder = x509.CertificateSigningRequestBuilder().subject_name(checked.subject)
    for ext in checked.csr.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    try:
        new_csr = builder.sign(private_key, signature_hash(key_type))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidCSR(f"cannot make a request for a {key_type} key: {exc}") from None
    der = new_csr.public_bytes(serialization.Encoding.DER)
    if len(der) > pki_settings().max_csr_bytes:
        raise InvalidCSR("the request is too large")
    return ServerKeyEnrollment(
        private_key=private_key, enrollment=simple_enroll(device=device, csr=der, now=now)
    )


class _AttrOrOID(core.Choice):  # type: ignore[misc]
    _alternatives = [("oid", core.ObjectIdentifier), ("attribute", core.Any)]


class _CsrAttrs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _AttrOrOID


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.ObjectIdentifier})]


# The algorithm identifiers come from cryptography's OID tables (one vocabulary).
_EC_CURVES = {
    "ec-p256": EllipticCurveOID.SECP256R1.dotted_string,
    "ec-p384": EllipticCurveOID.SECP384R1.dotted_string,
    "ec-p521": EllipticCurveOID.SECP521R1.dotted_string,
}
ID_EC_PUBLIC_KEY = PublicKeyAlgorithmOID.EC_PUBLIC_KEY.dotted_string
RSA_ENCRYPTION = PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5.dotted_string
ECDSA_WITH_SHA256 = SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string
SHA256_WITH_RSA = SignatureAlgorithmOID.RSA_WITH_SHA256.dotted_string
EXTENSION_REQUEST = "1.2.840.113549.1.9.14"  # PKCS #9 extensionRequest (RFC 2985)


def csr_attributes(label: EstLabel) -> bytes:
    """The ``csrattrs`` answer (RFC 7030 §4.5.2) from the label's profile: the key algorithms
    (with the allowed curves) and signature algorithms it takes, and extensionRequest when the
    profile needs subjectAltName."""
    profile = label.profile
    items: list[_AttrOrOID] = []
    curves = [_EC_CURVES[k] for k in profile.key_types if k in _EC_CURVES]
    if curves:
        attr = _Attribute({"type": ID_EC_PUBLIC_KEY, "values": curves})
        items.append(_AttrOrOID(name="attribute", value=core.Any.load(attr.dump())))
        items.append(_AttrOrOID(name="oid", value=ECDSA_WITH_SHA256))
    if "rsa" in profile.key_types:
        items.append(_AttrOrOID(name="oid", value=RSA_ENCRYPTION))
        items.append(_AttrOrOID(name="oid", value=SHA256_WITH_RSA))
    if profile.require_san:
        items.append(_AttrOrOID(name="oid", value=EXTENSION_REQUEST))
    return bytes(_CsrAttrs(items).dump())
