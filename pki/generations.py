"""Reading a CA's generations: which keys sign what, and which still answer for what they issued.

A generation is one CA key with the certificate that certifies it (``CAGeneration``). The CA row
points at the current one; the others are *pending* (issuance moves to them at a set time),
*previous* (they keep signing CRLs and OCSP responder certificates for what they issued) or
*retired* (everything they issued has expired). The use cases that change generations are in
``pki.rotation``.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from pki.exceptions import CAUnavailable, NotFound
from pki.models.authority import (
    CAGeneration,
    CAState,
    CertificateAuthority,
    GenerationState,
    certificate_chain_rows,
)
from pki.models.certificate import Certificate
from pki.models.key import KeyState

# Keys in these states sign nothing: not even a CRL (a compromised key's CRL proves nothing, a
# suspended key waits for its reactivation, and the others have no usable private key).
NO_SIGN_STATES = frozenset(
    {KeyState.DESTROYED, KeyState.PRE_ACTIVATION, KeyState.SUSPENDED, KeyState.COMPROMISED}
)


def current_generation(ca: CertificateAuthority) -> CAGeneration:
    """The generation the CA issues with (from the CA row; a row is made up when none was recorded)."""
    row = (
        CAGeneration.objects.filter(ca_id=ca.pk, number=ca.generation)
        .select_related("key", "certificate")
        .first()
    )
    if row is None:
        # A CA written without its generation row (only tests and raw loaders do that).
        row = CAGeneration(
            ca=ca,
            number=ca.generation,
            key=ca.key,
            certificate=ca.certificate,
            state=GenerationState.CURRENT,
            created_at=ca.created_at,
        )
    else:
        row.ca = ca
    return row


def generation_of(ca: CertificateAuthority, number: int | None) -> CAGeneration:
    """Generation ``number`` of ``ca`` (the current one for None), or ``NotFound``."""
    if number is None or number == ca.generation:
        return current_generation(ca)
    row = CAGeneration.objects.filter(ca_id=ca.pk, number=number).select_related("key", "certificate").first()
    if row is None:
        raise NotFound(f"CA {ca.name} has no generation {number}")
    row.ca = ca
    return row


def answering_generations(ca: CertificateAuthority) -> list[CAGeneration]:
    """The generations that still answer for what they issued (CRLs, OCSP): every one with a
    certificate that is not retired, the current one first."""
    if not ca.holds_key or ca.certificate_id is None:
        return []
    rows = list(
        CAGeneration.objects.filter(ca_id=ca.pk, certificate__isnull=False)
        .exclude(state=GenerationState.RETIRED)
        .exclude(number=ca.generation)
        .select_related("key", "certificate")
        .order_by("-number")
    )
    for row in rows:
        row.ca = ca
    return [current_generation(ca), *rows]


def ensure_generation_can_sign(generation: CAGeneration, *, now: dt.datetime) -> None:
    """Raise ``CAUnavailable`` unless this generation's key may sign at ``now`` (CRLs, responders)."""
    ca = generation.ca
    if ca.state in (CAState.EXTERNAL, CAState.PENDING):
        raise CAUnavailable(f"CA {ca.name} is {ca.state}: KMI signs nothing for it")
    if generation.key.state in NO_SIGN_STATES:
        raise CAUnavailable(
            f"the key of CA {ca.name} generation {generation.number} is {generation.key.state}"
        )
    cert = generation.certificate
    if cert is None:
        raise CAUnavailable(f"CA {ca.name} generation {generation.number} has no certificate yet")
    if cert.not_after <= now:
        raise CAUnavailable(
            f"CA {ca.name} generation {generation.number} expired at {cert.not_after:%Y-%m-%d}"
        )
    if cert.revoked_at is not None:
        raise CAUnavailable(f"the certificate of CA {ca.name} generation {generation.number} is revoked")


def cross_chains(certificate: Certificate) -> list[list[x509.Certificate]]:
    """Other chains of ``certificate`` through a root rollover's link certificates.

    The usual chain ends at the root generation that (indirectly) signed it. When that root
    has rolled over, the same certificate also chains to the previous root generation (through
    the link certifying the new key with the old one) or to the next one (through the link
    certifying the old key with the new one): what RFC 8555 §7.4.2 offers as ``alternate``.
    Each chain starts with ``certificate`` and ends with the other root.
    """
    rows = certificate_chain_rows(certificate)
    top = rows[-1]
    root = top.ca
    if root is None or len(rows) < 2:
        return []
    number = top.issuer_generation
    generations = {
        g.number: g
        for g in CAGeneration.objects.filter(ca_id=root.pk, number__in=[number - 1, number, number + 1])
        .select_related("certificate", "link_from_previous", "link_to_previous")
        .exclude(certificate__isnull=True)
    }
    head = [row.x509() for row in rows[:-1]]
    out: list[list[x509.Certificate]] = []
    this, previous, following = (generations.get(number + d) for d in (0, -1, 1))
    if this is None or this.certificate_id != top.pk:
        return []  # the chain does not end at one of the root's generations
    if this.link_from_previous is not None and previous is not None:
        out.append([*head, this.link_from_previous.x509(), previous.x509_certificate()])
    if following is not None and following.link_to_previous is not None:
        out.append([*head, following.link_to_previous.x509(), following.x509_certificate()])
    return out
