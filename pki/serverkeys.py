"""Server-generated keys, for clients that cannot make a CSR.

KMI generates the key, seals it in the key backend, requests and (when the profile allows)
issues its certificate, and hands it out once as a password-protected PKCS#12 (PBES2,
AES-256-CBC, PBKDF2-SHA256). After that one download KMI destroys its copy of the key, unless
the profile asks for escrow.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.clock import resolve
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


def _storing_backend() -> StoringKeyBackend:
    backend = get_backend()
    if not isinstance(backend, StoringKeyBackend):
        raise ConfigurationError(
            f"key backend {backend.alias!r} cannot store and export end-entity keys; "
            "server-generated keys need the encrypted backend"
        )
    return backend


def request_server_key(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    subject: x509.Name,
    sans: Sequence[SAN],
    key_type: KeyType | str,
    actor: str,
    requester: User | None = None,
    validity_days: int | None = None,
    delivery_id: uuid.UUID | str | None = None,
    now: dt.datetime | None = None,
) -> KeyDelivery:
    """Generate a key for a client, request its certificate (issued at once unless approval is needed).

    It seals the key, so it runs where the KEK is: in process, or on a signing worker through
    ``run_signing("request_server_key", delivery_id=…)`` (the caller picks ``delivery_id``).
    """
    now = resolve(now)
    kt = KeyType(key_type)
    if kt not in SERVER_KEY_TYPES:
        raise PolicyViolation(f"KMI does not generate {kt} keys for clients")
    backend = _storing_backend()
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


def deliver_pkcs12(
    *, delivery: KeyDelivery, password: str, actor: str, now: dt.datetime | None = None
) -> bytes:
    """Return the key and its chain as an AES-256 PKCS#12, once; then destroy KMI's copy (unless escrow)."""
    now = resolve(now)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PolicyViolation(f"the PKCS#12 password needs at least {MIN_PASSWORD_LENGTH} characters")
    with transaction.atomic():
        row = (
            KeyDelivery.objects.select_for_update(of=("self",))
            .select_related("key", "request")
            .get(pk=delivery.pk)
        )
        if row.delivered_at is not None:
            raise AlreadyDelivered(f"the key of delivery {row.pk} was downloaded at {row.delivered_at:%c}")
        if row.request.state != RequestState.ISSUED:
            raise InvalidState(f"request {row.request_id} is {row.request.state}; no certificate yet")
        key = row.key
        if key.state == KeyState.DESTROYED or not key.handle:
            raise InvalidState(f"key {key.pk} was destroyed")
        certificate = Certificate.objects.select_related("ca").get(request_id=row.request_id)
        chain = chain_for(certificate)
        private_key = _storing_backend().export_private_key(key.handle)
        encryption = (
            PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password.encode())
        )
        blob = pkcs12.serialize_key_and_certificates(
            name=certificate.serial.encode(),
            key=private_key,  # type: ignore[arg-type]
            cert=chain[0],
            cas=list(chain[1:]),
            encryption_algorithm=encryption,
        )
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
    return blob
