"""Certificates for lifecycle tests: issued through the use cases, optionally with a key KMI holds."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from cryptography import x509
from django.db import transaction

from pki.enrollment import sign_csr
from pki.keys import get_backend, key_type_of
from pki.models import Certificate, CertificateAuthority, Key, KeyState, Profile
from pki.models.key import KeyPurpose
from pki.x509.csr import spki_der, spki_fingerprint
from tests.conftest import NOW, load_key, make_csr


def issue(
    ca: CertificateAuthority,
    profile: Callable[[str], Profile],
    *,
    key_name: str = "ec-p256",
    subject: str = "CN=www.example.test",
    **fields: Any,
) -> Certificate:
    """Issue a tls-server certificate for ``subject`` at NOW, then set ``fields`` on its row."""
    sans = [x509.DNSName(subject.removeprefix("CN="))]
    cert = sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(key_name, subject=subject, sans=sans),
        actor="test",
        now=NOW,
    )
    if fields:
        Certificate.objects.filter(pk=cert.pk).update(**fields)
        cert.refresh_from_db()
    return cert


def hold_key(cert: Certificate, key_name: str = "ec-p256") -> Key:
    """Import a committed private key into KMI's encrypted backend; attach it to ``cert`` (auto-renew)."""
    private_key = load_key(key_name)
    key_id = uuid.uuid4()
    with transaction.atomic():  # the sealed row's foreign key is checked at commit
        handle = get_backend().store(key_id=key_id, private_key=private_key)  # type: ignore[attr-defined]
        key = Key.objects.create(
            id=key_id,
            key_type=key_type_of(private_key.public_key()),
            purpose=KeyPurpose.END_ENTITY,
            backend="encrypted",
            handle=handle,
            public_key_der=spki_der(private_key.public_key()),
            spki_sha256=spki_fingerprint(private_key.public_key()),
            state=KeyState.ACTIVE,
            created_at=NOW,
            activated_at=NOW,
        )
    Certificate.objects.filter(pk=cert.pk).update(key=key, auto_renew=True)
    cert.refresh_from_db()
    return key
