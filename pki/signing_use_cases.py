"""The signing use cases, registered by name for ``pki.signing.run_signing`` and the signer.

Each one loads its objects by id and calls the domain's use case; each is idempotent on its ids
(a replay returns what was made the first time). They live here, not in ``pki.signing``, so the
seam imports none of the modules that call it (no import cycle); ``pki.apps`` imports this module
at start-up so the registry is complete in every process.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction

from pki.exceptions import NotFound
from pki.signing import signing_use_case


@signing_use_case("issue_request")
def _issue_request(*, request_id: int, actor: str) -> dict[str, Any]:
    """Issue the certificate of an approved request; a request already issued returns its certificate."""
    from pki.issuance import issue_certificate
    from pki.models.certificate import Certificate
    from pki.models.request import CertificateRequest, RequestState

    with transaction.atomic():
        try:
            request = (
                CertificateRequest.objects.select_for_update(of=("self",))
                .select_related("ca", "profile")
                .get(pk=request_id)
            )
        except CertificateRequest.DoesNotExist:
            raise NotFound(f"no certificate request {request_id}") from None
        if request.state == RequestState.ISSUED:
            cert = Certificate.objects.get(request=request)
            return {"certificate_id": cert.pk, "serial": cert.serial, "replayed": True}
        cert = issue_certificate(request=request, actor=actor)
    return {"certificate_id": cert.pk, "serial": cert.serial, "replayed": False}


@signing_use_case("renew_certificate")
def _renew_certificate(
    *,
    certificate_id: int,
    actor: str,
    csr_pem: str | None = None,
    validity_days: int | None = None,
    renewer_id: int | None = None,
) -> dict[str, Any]:
    """Renew a certificate (same key, or the key of ``csr_pem``); a person renewing needs a current grant."""
    from django.contrib.auth.models import User

    from pki.issuance import renew_certificate
    from pki.models.certificate import Certificate

    try:
        cert = Certificate.objects.select_related("ca", "profile", "key").get(pk=certificate_id)
    except Certificate.DoesNotExist:
        raise NotFound(f"no certificate {certificate_id}") from None
    renewer = None
    if renewer_id is not None:
        renewer = User.objects.filter(pk=renewer_id).first()
        if renewer is None:
            raise NotFound(f"no user {renewer_id}")
    new = renew_certificate(
        certificate=cert, actor=actor, csr=csr_pem, validity_days=validity_days, renewer=renewer
    )
    return {"certificate_id": new.pk, "serial": new.serial, "replayed": False}


@signing_use_case("create_ca")
def _create_ca(*, creation_id: int, actor: str) -> dict[str, Any]:
    """Make the CA of an approved CA creation (``pki.ca_creation``); a replay returns it."""
    from pki.ca_creation import create_approved_ca

    try:
        ca, replayed = create_approved_ca(creation_id=creation_id, actor=actor)
    except ObjectDoesNotExist:
        raise NotFound(f"no CA creation {creation_id}") from None
    return {"ca_id": ca.pk, "serial": ca.own_certificate().serial, "replayed": replayed}


@signing_use_case("verify_eab")
def _verify_eab(*, eab_id: int, alg: str, signing_input: str, signature: str, actor: str) -> dict[str, Any]:
    """Check an ACME external account binding's MAC where its sealed HMAC key can be opened
    (nothing changes: the web side binds the key once this says the MAC is valid)."""
    from pki.acme.accounts import eab_mac_matches
    from pki.acme.jws import b64u_decode

    valid = eab_mac_matches(
        eab_id=eab_id,
        alg=alg,
        signing_input=b64u_decode(signing_input, what="signing input"),
        signature=b64u_decode(signature, what="signature"),
    )
    return {"valid": valid}


@signing_use_case("scep_operation")
def _scep_operation(*, label_id: int, body: str, actor: str) -> dict[str, Any]:
    """Answer a SCEP pkiMessage of an enabled label with its RA key (``pki.scep.service``)."""
    import base64

    from pki.models.device import ScepLabel
    from pki.scep import messages, service

    label = (
        ScepLabel.objects.select_related(
            "ca", "ca__certificate", "ca__key", "ra_key", "ra_certificate", "profile"
        )
        .filter(pk=label_id, enabled=True)
        .first()
    )
    if label is None:
        raise NotFound(f"no enabled SCEP label {label_id}")
    try:
        reply = service.pki_operation(label=label, body=base64.b64decode(body, validate=True))
    except messages.Unreadable as exc:
        return {"unreadable": str(exc) or "not a pkiMessage"}
    return {"reply": base64.b64encode(reply).decode()}


@signing_use_case("request_server_key")
def _request_server_key(
    *,
    delivery_id: str,
    ca_id: int,
    profile_id: int,
    subject: str,
    sans: list[str],
    key_type: str,
    actor: str,
    download_secret_sha256: str,
    requester_id: int | None = None,
    validity_days: int | None = None,
) -> dict[str, Any]:
    """Generate a client's key where the KEK is, request and (when auto-approved) issue its certificate.

    ``delivery_id`` is chosen by the caller: a replay returns the delivery made the first time.
    """
    from cryptography import x509
    from django.contrib.auth.models import User

    from pki.models.authority import CertificateAuthority
    from pki.models.delivery import KeyDelivery
    from pki.models.profile import Profile
    from pki.models.request import RequestState
    from pki.serverkeys import request_server_key
    from pki.x509.names import parse_san, parse_subject

    existing = KeyDelivery.objects.filter(pk=delivery_id).select_related("request").first()
    if existing is None:
        try:
            ca = CertificateAuthority.objects.select_related("certificate", "key").get(pk=ca_id)
            profile = Profile.objects.get(pk=profile_id)
        except (CertificateAuthority.DoesNotExist, Profile.DoesNotExist):
            raise NotFound(f"no CA {ca_id} or profile {profile_id}") from None
        requester = User.objects.filter(pk=requester_id).first() if requester_id is not None else None
        existing = request_server_key(
            ca=ca,
            profile=profile,
            subject=parse_subject(subject) if subject else x509.Name([]),
            sans=[parse_san(text) for text in sans],
            key_type=key_type,
            actor=actor,
            download_secret_sha256=download_secret_sha256,
            requester=requester,
            validity_days=validity_days,
            delivery_id=delivery_id,
        )
    return {
        "delivery_id": str(existing.pk),
        "request_id": existing.request_id,
        "issued": existing.request.state == RequestState.ISSUED,
    }


@signing_use_case("hand_over_server_key")
def _hand_over_server_key(
    *, delivery_id: str, download_secret: str, actor: str, recipient: str
) -> dict[str, Any]:
    """Take a server-generated key's one delivery (its one-time secret given); return it sealed to
    the caller's X25519 key."""
    from pki.serverkeys import hand_over_sealed

    return hand_over_sealed(
        delivery_id=delivery_id, download_secret=download_secret, actor=actor, recipient=recipient
    )


@signing_use_case("destroy_key")
def _destroy_key(
    *, key_id: str, actor: str, reason: str = "", destruction_id: int | None = None
) -> dict[str, Any]:
    """Destroy a key where its material lives (idempotent); a CA key only for its approved
    destruction (``destruction_id``, two administrators)."""
    from django.core.exceptions import ValidationError

    from pki.destruction import destroy_key, finish_key_destruction
    from pki.models.key import Key

    try:
        key = Key.objects.get(pk=key_id)
    except (Key.DoesNotExist, ValidationError):
        raise NotFound(f"no key {key_id}") from None
    if destruction_id is not None:
        key = finish_key_destruction(destruction_id=destruction_id, key_id=str(key.pk), actor=actor)
    else:
        key = destroy_key(key=key, actor=actor, reason=reason)
    return {"key_id": str(key.pk), "state": key.state}


@signing_use_case("hand_over_recovered_key")
def _hand_over_recovered_key(*, recovery_id: int, actor: str, user_id: int, recipient: str) -> dict[str, Any]:
    """Take an approved key recovery's one download; return the key sealed to the caller's X25519 key."""
    from pki.recovery import hand_over_recovered_key

    return hand_over_recovered_key(recovery_id=recovery_id, actor=actor, user_id=user_id, recipient=recipient)


@signing_use_case("create_scep_label")
def _create_scep_label(
    *, name: str, ca_id: int, profile_id: int, challenge_hash: str, actor: str
) -> dict[str, Any]:
    """Create a SCEP label where its RA key is generated and certified (the KEK, the CA's key)."""
    from pki.models.profile import Profile
    from pki.scep.labels import create_scep_label

    profile = Profile.objects.filter(pk=profile_id).first()
    if profile is None:
        raise NotFound(f"no profile {profile_id}")
    label = create_scep_label(
        name=name, ca=_ca_by_id(ca_id), profile=profile, challenge_hash=challenge_hash, actor=actor
    )
    return {"label_id": label.pk, "name": label.name}


def _ca_by_id(ca_id: int) -> Any:
    from pki.models.authority import CertificateAuthority

    try:
        return CertificateAuthority.objects.select_related("key", "certificate", "parent").get(pk=ca_id)
    except CertificateAuthority.DoesNotExist:
        raise NotFound(f"no CA {ca_id}") from None


@signing_use_case("rollover_ca")
def _rollover_ca(
    *,
    ca_id: int,
    actor: str,
    key_type: str | None = None,
    backend: str | None = None,
    at: str | None = None,
    validity_days: int | None = None,
    from_generation: int | None = None,
) -> dict[str, Any]:
    """Give a CA a new key and certificate (``at``: ISO 8601 time issuance moves to it); a replay
    with the same ``from_generation`` returns the generation made the first time."""
    import datetime as dt

    from pki.rotation import rollover_ca

    generation = rollover_ca(
        ca=_ca_by_id(ca_id),
        actor=actor,
        key_type=key_type,
        backend=backend,
        at=dt.datetime.fromisoformat(at) if at else None,
        validity_days=validity_days,
        from_generation=from_generation,
    )
    return {"ca_id": ca_id, "generation": generation.number, "certificate_id": generation.certificate_id}


@signing_use_case("renew_ca")
def _renew_ca(*, ca_id: int, actor: str, validity_days: int | None = None) -> dict[str, Any]:
    """Re-certify a CA's current key with a new validity."""
    from pki.rotation import renew_ca

    cert = renew_ca(ca=_ca_by_id(ca_id), actor=actor, validity_days=validity_days)
    return {"ca_id": ca_id, "certificate_id": cert.pk, "serial": cert.serial}
