"""OCSP responder certificates: each CA generation's delegated responder, a key KMI makes
for it and a short-lived certificate under the ``ocsp-signing`` profile (RFC 6960 §4.2.2.2)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import NameOID
from django.db import transaction

from pki import audit
from pki.authorities import ensure_can_sign
from pki.clock import resolve
from pki.conf import ocsp_settings
from pki.generations import ensure_generation_can_sign
from pki.issuance import issue_for_key
from pki.keystore import generate_key
from pki.models.authority import CAGeneration, CertificateAuthority
from pki.models.key import KeyPurpose, KeyState
from pki.models.ocsp import OCSPResponder
from pki.models.profile import Profile

RESPONDER_PROFILE = "ocsp-signing"


def responder_subject(ca: CertificateAuthority) -> x509.Name:
    """The responder's subject: the CA's subject with ``CN=<CA CN> OCSP Responder``."""
    ca_subject = ca.x509_certificate().subject
    cns = ca_subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(cns[0].value) if cns else ca.name
    # RFC 5280 Appendix A: ub-common-name is 64 characters.
    cn = f"{base[: 64 - len(' OCSP Responder')]} OCSP Responder"
    rdns = [rdn for rdn in ca_subject.rdns if rdn.get_attributes_for_oid(NameOID.COMMON_NAME) == []]
    return x509.Name([*rdns, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])])


def _needs_renewal(responder: OCSPResponder, now: dt.datetime, fraction: float) -> bool:
    cert = responder.certificate
    if cert.revoked_at is not None or responder.key.state != KeyState.ACTIVE:
        return True
    lifetime = cert.not_after - cert.not_before
    return cert.not_after - now < lifetime * fraction


def ensure_ocsp_responder(
    *,
    ca: CertificateAuthority,
    actor: str,
    generation: CAGeneration | None = None,
    now: dt.datetime | None = None,
) -> OCSPResponder:
    """Return the delegated OCSP responder of a CA generation (the current one by default),
    renewing it when it is missing, revoked or due.

    Renewal (a new key and certificate, the old key deactivated) happens once less than
    ``KMI_OCSP_RESPONDER_RENEW_FRACTION`` of the certificate's validity is left. The responder
    certificate is signed by that generation's key: after a rollover the previous key keeps
    certifying its own responder for what it issued.
    """
    now = resolve(now)
    conf = ocsp_settings()
    with transaction.atomic():
        # One renewal per CA at a time: concurrent workers wait here, then see the new responder.
        ca = (
            CertificateAuthority.objects.select_for_update(of=("self",))
            .select_related("certificate", "key")
            .get(pk=ca.pk)
        )
        number = ca.generation if generation is None else generation.number
        current = (
            OCSPResponder.objects.select_related("certificate", "key")
            .filter(ca=ca, generation=number)
            .first()
        )
        if current is not None and not _needs_renewal(current, now, conf.responder_renew_fraction):
            return current
        if number == ca.generation:
            signing_generation = None
            ensure_can_sign(ca, now=now)
        else:
            assert generation is not None
            generation.ca = ca
            signing_generation = generation
            ensure_generation_can_sign(generation, now=now)
        key = generate_key(
            key_type=conf.responder_key_type,
            purpose=KeyPurpose.OCSP,
            actor=actor,
            scope=f"ca:{ca.pk}",
            now=now,
        )
        cert = issue_for_key(
            ca=ca,
            profile=Profile.objects.get(name=RESPONDER_PROFILE),
            subject=responder_subject(ca),
            key=key,
            actor=actor,
            validity_days=conf.responder_validity_days,
            generation=signing_generation,
            now=now,
        )
        if current is None:
            responder = OCSPResponder.objects.create(
                ca=ca, generation=number, certificate=cert, key=key, updated_at=now
            )
        else:
            old_key = current.key
            if old_key.state == KeyState.ACTIVE:
                # The old key signs nothing more; its responses stay valid until their nextUpdate.
                old_key.state = KeyState.DEACTIVATED
                old_key.deactivated_at = now
                old_key.save(update_fields=["state", "deactivated_at"])
            responder = current
            responder.certificate, responder.key, responder.updated_at = cert, key, now
            responder.save(update_fields=["certificate", "key", "updated_at"])
        audit.record(
            action="ocsp.responder_issued",
            actor=actor,
            obj=responder,
            details={
                "ca": ca.name,
                "generation": number,
                "serial": cert.serial,
                "not_after": cert.not_after.isoformat(),
                "replaces": current.certificate.serial if current is not None else None,
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return responder
