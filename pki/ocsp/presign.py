"""Pre-signing: a response for every unexpired certificate and both CertID hashes, re-signed
at half-life and after a status change (RFC 5019 §2.1.1, §6)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence

from django.db.models import Exists, OuterRef

from pki.clock import resolve
from pki.conf import ocsp_settings
from pki.exceptions import PKIError
from pki.generations import answering_generations
from pki.models.authority import CAGeneration, CAState, CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.ocsp import OCSPResponse
from pki.ocsp.issuers import Issuer
from pki.ocsp.responders import ensure_ocsp_responder
from pki.ocsp.responses import SignedResponse, Signer, build_response, single_status
from pki.ocsp.store import PRESIGNED_HASHES, STORE

log = logging.getLogger(__name__)

PRESIGN_BATCH = 500


def presign_responses(
    *,
    ca: CertificateAuthority,
    actor: str,
    certificate_ids: Sequence[int] | None = None,
    from_certificate_id: int | None = None,
    stale_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Sign and store SHA-1 and SHA-256 responses for the CA's unexpired certificates.

    Not audited one by one: responses are derived data, re-signed every half hour; the events
    they reflect (issuance, revocation, responder certificates) are audited where they happen.

    ``certificate_ids`` limits it to those certificates, ``from_certificate_id`` to those with
    that id or a later one that have no response yet, ``stale_before`` to certificates whose
    stored response was signed before that time (or never). Returns how many certificates.
    Each generation of the CA answers for what it issued, with its own responder.
    """
    now = resolve(now)
    presign = functools.partial(
        _presign_generation,
        actor=actor,
        certificate_ids=certificate_ids,
        from_certificate_id=from_certificate_id,
        stale_before=stale_before,
        now=now,
    )
    done = 0
    for generation in answering_generations(ca):
        if generation.number != ca.generation:
            # A previous generation answers only while it has something to answer for; a key
            # it cannot use any more must not stop the current generation's responses.
            if not Certificate.objects.filter(
                ca_id=ca.pk, issuer_generation=generation.number, not_after__gt=now
            ).exists():
                continue
            try:
                done += presign(generation)
            except PKIError as exc:
                log.warning("OCSP: generation %s of CA %s cannot sign: %s", generation.number, ca.name, exc)
            continue
        done += presign(generation)
    return done


def _presign_generation(
    generation: CAGeneration,
    *,
    actor: str,
    certificate_ids: Sequence[int] | None,
    from_certificate_id: int | None,
    stale_before: dt.datetime | None,
    now: dt.datetime,
) -> int:
    ca = generation.ca
    responder = ensure_ocsp_responder(ca=ca, actor=actor, generation=generation, now=now)
    signer = Signer.of(responder)
    issuer = Issuer.of(generation)
    certs = Certificate.objects.filter(ca_id=ca.pk, issuer_generation=generation.number, not_after__gt=now)
    if certificate_ids is not None:
        certs = certs.filter(pk__in=list(certificate_ids))
    if from_certificate_id is not None:
        certs = certs.filter(pk__gte=from_certificate_id).exclude(
            Exists(OCSPResponse.objects.filter(certificate_id=OuterRef("pk")))
        )
    if stale_before is not None:
        # Fresh and still telling the truth: a status change whose signal was lost (broker down,
        # worker killed) is caught here too.
        current = OCSPResponse.objects.filter(
            certificate_id=OuterRef("pk"),
            hash_algorithm=PRESIGNED_HASHES[0],
            this_update__gte=stale_before,
            revocation_reason=OuterRef("revocation_reason"),
        )
        certs = certs.exclude(Exists(current))
    done = 0
    batch: list[tuple[int, str, str, str, SignedResponse]] = []
    rows = certs.order_by("pk").values_list("pk", "serial", "revoked_at", "revocation_reason")
    for pk, serial, revoked_at, reason in rows.iterator(chunk_size=PRESIGN_BATCH):
        serial_int = int(serial, 16)
        for algorithm in PRESIGNED_HASHES:
            status = single_status(issuer.cert_id(serial_int, algorithm), revoked_at, reason)
            signed = build_response(signer=signer, singles=[status], now=now)
            batch.append((pk, serial, algorithm, reason if revoked_at is not None else "", signed))
        done += 1
        if len(batch) >= PRESIGN_BATCH:
            STORE.put(ca.pk, batch, now=now)
            batch = []
    if batch:
        STORE.put(ca.pk, batch, now=now)
    return done


def refresh_responses(*, actor: str, now: dt.datetime | None = None) -> dict[str, int]:
    """Renew responders, re-sign stale or outdated responses, and drop expired ones (the beat job).

    A response is re-signed when it is past half its validity or when the certificate's status
    changed after it was signed. Returns the number of certificates re-signed per CA name.
    """
    now = resolve(now)
    half = dt.timedelta(seconds=ocsp_settings().response_validity_seconds / 2)
    signed: dict[str, int] = {}
    for ca in CertificateAuthority.objects.filter(certificate__isnull=False).exclude(state=CAState.DISABLED):
        try:
            signed[ca.name] = presign_responses(ca=ca, actor=actor, stale_before=now - half, now=now)
        except PKIError as exc:  # e.g. an expired CA: it cannot renew its responder
            log.warning("OCSP: cannot pre-sign responses of CA %s: %s", ca.name, exc)
        except Exception:  # one CA that fails must not stop the others
            log.exception("OCSP: cannot pre-sign responses of CA %s", ca.name)
    expired = OCSPResponse.objects.filter(next_update__lte=now)
    STORE.delete(expired.values_list("ca_id", "serial", "hash_algorithm"))
    expired.delete()
    return signed
