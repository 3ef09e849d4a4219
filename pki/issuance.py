"""Issuance use cases: submit, approve and reject requests; issue and renew certificates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.authorities import ensure_can_sign, validity_window
from pki.blocklist import check_before_signing, ensure_not_blocked
from pki.clock import resolve
from pki.conf import pki_settings
from pki.crl import shard_for
from pki.exceptions import ApprovalRequired, InvalidState, NotAuthorized, PolicyViolation
from pki.generations import ensure_generation_can_sign
from pki.keys import get_backend, key_type_of, signature_hash
from pki.keys.base import issuer_public_key
from pki.models.authority import CAGeneration, CertificateAuthority, certificate_chain
from pki.models.certificate import Certificate
from pki.models.key import Key
from pki.models.profile import Profile
from pki.models.request import Approval, CertificateRequest, RequestState
from pki.profiles import ProfilePolicy, check_public_key, name_matches
from pki.recording import Guard, new_request_id, record_issuance
from pki.signals import certificate_issued
from pki.x509.builders import end_entity_builder
from pki.x509.constraints import NameConstraints
from pki.x509.csr import CheckedCSR, check_csr, load_csr, spki_fingerprint
from pki.x509.names import SAN, certificate_sans
from pki.x509.serials import random_serial


@dataclass(frozen=True)
class Subject:
    """What a certificate is about: its name, SANs and public key."""

    name: x509.Name
    sans: tuple[SAN, ...]
    public_key: CertificatePublicKeyTypes
    key_fingerprint: str = ""  # SHA-256 of the SPKI when the caller has it (a checked CSR does)


@dataclass(frozen=True)
class CertificateOptions:
    """What a requester asks for a certificate beyond its CSR: who hears about it and whether KMI
    renews it by itself. ``auto_renew`` None means the profile's default; ``renew_before_days``
    None the profile's (else ``KMI_AUTO_RENEW_DAYS``)."""

    auto_renew: bool | None = None
    renew_before_days: int | None = None
    owner_email: str = ""
    owner_webhook_url: str = ""

    def check(self) -> CertificateOptions:
        """Refuse values KMI could not act on; return self."""
        if self.renew_before_days is not None and not 1 <= self.renew_before_days <= 3650:
            raise PolicyViolation("renew_before_days must be between 1 and 3650")
        if self.owner_webhook_url and not self.owner_webhook_url.startswith(("https://", "http://")):
            raise PolicyViolation("the owner's webhook must be an http(s) URL")
        if self.owner_email and ("@" not in self.owner_email or any(c.isspace() for c in self.owner_email)):
            raise PolicyViolation(f"{self.owner_email!r} is not an e-mail address")
        return self


NO_OPTIONS = CertificateOptions()

# A CSR as the use cases take it: PEM or DER, parsed, or already checked by ``parse_csr``.
CSRInput = bytes | str | x509.CertificateSigningRequest | CheckedCSR


def parse_csr(csr: CSRInput) -> CheckedCSR:
    """Parse (if needed) and check a CSR: size, syntax, signature, key, extensions."""
    if isinstance(csr, CheckedCSR):
        return csr  # checked already, by a caller on the same path
    if isinstance(csr, x509.CertificateSigningRequest):
        return check_csr(csr)
    return check_csr(load_csr(csr, max_bytes=pki_settings().max_csr_bytes))


def _constraints_of(ca: CertificateAuthority) -> NameConstraints:
    cached: NameConstraints | None = getattr(ca, "_constraints_cache", None)
    if cached is None:
        cached = NameConstraints.from_json(ca.name_constraints)
        ca._constraints_cache = cached  # type: ignore[attr-defined]
    return cached


def check_request(
    *, ca: CertificateAuthority, policy: ProfilePolicy, csr: CheckedCSR, validity_days: int | None
) -> tuple[SAN, ...]:
    """Apply the profile's policy and the CA's name constraints; return the SANs to issue."""
    if policy.is_ca:
        raise PolicyViolation(
            f"profile {policy.name} issues CA certificates: use create_intermediate_ca (init_ca --parent)"
        )
    sans = policy.check(csr, validity_days=validity_days)
    _constraints_of(ca).check_sans(sans)
    return sans


def new_request(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr_der: bytes,
    subject: Subject,
    actor: str,
    requester: User | None,
    validity_days: int | None,
    auto: bool,
    now: dt.datetime,
    request_id: int | None = None,
    options: CertificateOptions = NO_OPTIONS,
    renews: Certificate | None = None,
) -> tuple[CertificateRequest, dict[str, Any]]:
    """The (unsaved) request row of a checked submission and its ``request.submitted`` audit details.

    ``csr_der`` is empty for a renewal that keeps its certificate's key (``renews``)."""
    request = CertificateRequest(
        id=request_id,
        ca=ca,
        profile=profile,
        csr_der=csr_der,
        subject=subject.name.rfc4514_string(),
        san_text="\n".join(str(s) for s in subject.sans),
        key_fingerprint=subject.key_fingerprint or spki_fingerprint(subject.public_key),
        validity_days=validity_days,
        state=RequestState.APPROVED if auto else RequestState.PENDING,
        requester=requester,
        requested_by=actor,
        reviewed_by="auto" if auto else "",
        reviewed_at=now if auto else None,
        created_at=now,
        renews=renews,
        auto_renew=options.auto_renew,
        renew_before_days=options.renew_before_days,
        owner_email=options.owner_email,
        owner_webhook_url=options.owner_webhook_url,
    )
    details: dict[str, Any] = {
        "ca": ca.name,
        "profile": profile.name,
        "subject": request.subject,
        "sans": [str(s) for s in subject.sans],
        "state": request.state,
    }
    if renews is not None:
        details["renews"] = renews.serial
    return request, details


def store_submission(
    request: CertificateRequest, details: dict[str, Any], *, actor: str, now: dt.datetime
) -> CertificateRequest:
    """Insert a request row from ``new_request`` with its ``request.submitted`` audit event, together."""
    with transaction.atomic():
        request.save(force_insert=True)
        audit.record(
            action="request.submitted",
            actor=actor,
            obj=request,
            details=details,
            scope=f"ca:{request.ca_id}",
            now=now,
        )
    return request


def submit_request(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: CSRInput,
    actor: str,
    requester: User | None = None,
    validity_days: int | None = None,
    options: CertificateOptions = NO_OPTIONS,
    now: dt.datetime | None = None,
) -> CertificateRequest:
    """Check a CSR against the profile and CA; store it approved (auto) or pending."""
    now = resolve(now)
    options.check()
    # A CA that cannot sign (disabled, expired, key inactive) takes no requests: none left behind.
    ensure_can_sign(ca, now=now)
    checked = parse_csr(csr)
    ensure_not_blocked(spki_sha256=checked.key_fingerprint, actor=actor, path="submit_request", now=now)
    policy = profile.policy()
    sans = check_request(ca=ca, policy=policy, csr=checked, validity_days=validity_days)
    request, details = new_request(
        ca=ca,
        profile=profile,
        csr_der=checked.der,
        subject=Subject(checked.subject, sans, checked.public_key, checked.key_fingerprint),
        actor=actor,
        requester=requester,
        validity_days=validity_days,
        auto=not policy.requires_approval,
        now=now,
        options=options,
    )
    return store_submission(request, details, actor=actor, now=now)


def submit_and_issue(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: CSRInput,
    actor: str,
    requester: User | None = None,
    validity_days: int | None = None,
    options: CertificateOptions = NO_OPTIONS,
    now: dt.datetime | None = None,
    guard: Guard | None = None,
) -> tuple[CertificateRequest, Certificate | None]:
    """Submit a CSR and issue it at once when the profile auto-approves; the CSR is checked once.

    On PostgreSQL an auto-approved request, its certificate and both audit events
    (``request.submitted``, ``certificate.issued``) are written by one statement, after signing:
    all of it or nothing. Elsewhere, or when the profile needs approval, it is ``submit_request``
    followed by ``issue_certificate`` in one transaction.

    ``guard`` joins the one statement (``pki.recording.Guard``; ``GuardRefused`` and nothing
    written when it finds nothing to do); only where that statement is used.
    """
    now = resolve(now)
    options.check()
    ensure_can_sign(ca, now=now)
    checked = parse_csr(csr)
    policy = profile.policy()
    request_id = None if policy.requires_approval else new_request_id()
    if request_id is not None:
        # (submit_request checks it on the other branch)
        check_before_signing(spki_sha256=checked.key_fingerprint, actor=actor, path="submit_request", now=now)
    if request_id is None:
        if guard is not None:
            raise ValueError("a guard needs the one-statement issuance (PostgreSQL, no approval)")
        with transaction.atomic():
            request = submit_request(
                ca=ca,
                profile=profile,
                csr=checked,
                actor=actor,
                requester=requester,
                validity_days=validity_days,
                options=options,
                now=now,
            )
            if request.state != RequestState.APPROVED:
                return request, None
            return request, issue_certificate(request=request, csr=checked, actor=actor, now=now)
    sans = check_request(ca=ca, policy=policy, csr=checked, validity_days=validity_days)
    subject = Subject(checked.subject, sans, checked.public_key, checked.key_fingerprint)
    request, details = new_request(
        ca=ca,
        profile=profile,
        csr_der=checked.der,
        subject=subject,
        actor=actor,
        requester=requester,
        validity_days=validity_days,
        auto=True,
        now=now,
        request_id=request_id,
        options=options,
    )
    submitted = audit.pending_event(
        action="request.submitted", actor=actor, obj=request, details=details, scope=f"ca:{ca.pk}", now=now
    )
    cert = _sign_and_record(
        ca=ca,
        profile=profile,
        policy=policy,
        subject=subject,
        validity_days=policy.validity_for(validity_days),
        actor=actor,
        now=now,
        request=request,
        submitted=submitted,
        guard=guard,
    )
    return request, cert


def _same_reviewer(approval: Approval, *, reviewer: User | None, actor: str) -> bool:
    """Whether ``approval`` was given by this reviewer (their account; at the command line, their name)."""
    if reviewer is not None:
        return approval.approver_id == reviewer.pk
    return approval.approver_id is None and approval.approved_by == actor


def approve_request(
    *,
    request: CertificateRequest,
    actor: str,
    reviewer: User | None = None,
    now: dt.datetime | None = None,
) -> CertificateRequest:
    """Record one reviewer's approval of a pending request (re-checking it against today's policy).

    Separation of duties: whoever submitted the request cannot approve it, and a profile's
    ``approvals_required`` approvals must come from distinct reviewers. The request turns
    ``approved`` with the last one (audited ``request.approved`` with every approver); until
    then it stays ``pending`` (each approval audited ``request.approval_recorded``).
    ``reviewer`` None is an operator at the command line, known by ``actor`` only.
    """
    now = resolve(now)
    # Checked before the transaction too, so the refusal's audit event is kept.
    ensure_not_blocked(spki_sha256=request.key_fingerprint, actor=actor, path="approve_request", now=now)
    with transaction.atomic():
        request = (
            CertificateRequest.objects.select_for_update().select_related("ca", "profile").get(pk=request.pk)
        )
        if request.state != RequestState.PENDING:
            raise InvalidState(f"request {request.pk} is {request.state}, not pending")
        if reviewer is not None and reviewer.pk == request.requester_id:
            # Separation of duties: whoever asked for a certificate is not the one who allows it.
            raise PolicyViolation(f"request {request.pk} is your own: another operator must approve it")
        ensure_not_blocked(spki_sha256=request.key_fingerprint, actor=actor, path="approve_request", now=now)
        if request.renews_id is not None:
            _renewal_plan_of(request, actor=actor, now=now)
        else:
            check_request(
                ca=request.ca,
                policy=request.profile.policy(),
                csr=parse_csr(x509.load_der_x509_csr(bytes(request.csr_der))),
                validity_days=request.validity_days,
            )
        earlier = list(request.approvals.all())
        if any(_same_reviewer(a, reviewer=reviewer, actor=actor) for a in earlier):
            raise PolicyViolation(f"you approved request {request.pk} already: it needs another reviewer")
        Approval.objects.create(request=request, approver=reviewer, approved_by=actor, created_at=now)
        approvers = [a.approved_by for a in earlier] + [actor]
        required = request.profile.approvals_required if request.profile.requires_approval else 1
        approved = len(approvers) >= required
        if approved:
            request.state = RequestState.APPROVED
            request.reviewer = reviewer
            request.reviewed_by = actor
            request.reviewed_at = now
            request.save(update_fields=["state", "reviewer", "reviewed_by", "reviewed_at"])
        audit.record(
            action="request.approved" if approved else "request.approval_recorded",
            actor=actor,
            obj=request,
            details={"approvals": len(approvers), "required": required, "approvers": approvers},
            scope=f"ca:{request.ca_id}",
            now=now,
        )
    return request


def _close_request(
    request: CertificateRequest,
    *,
    expected: RequestState,
    closed: RequestState,
    reason: str,
    actor: str,
    now: dt.datetime,
    reviewer: User | None = None,
    reviewed: bool = False,
) -> CertificateRequest:
    """Move a request from ``expected`` to ``closed`` with a reason, audited ``request.<closed>``;
    ``reviewed``: the actor (and ``reviewer``) decided it, and the row says so."""
    with transaction.atomic():
        request = CertificateRequest.objects.select_for_update().get(pk=request.pk)
        if request.state != expected:
            raise InvalidState(f"request {request.pk} is {request.state}, not {expected.value}")
        request.state = closed
        request.reason = reason
        fields = ["state", "reason"]
        if reviewed:
            request.reviewer, request.reviewed_by, request.reviewed_at = reviewer, actor, now
            fields += ["reviewer", "reviewed_by", "reviewed_at"]
        request.save(update_fields=fields)
        audit.record(
            action=f"request.{closed.value}",
            actor=actor,
            obj=request,
            details={"reason": reason},
            scope=f"ca:{request.ca_id}",
            now=now,
        )
    return request


def fail_request(
    *, request: CertificateRequest, reason: str, actor: str, now: dt.datetime | None = None
) -> CertificateRequest:
    """Give up an approved request that was never issued (state ``failed``, with the reason); audited."""
    return _close_request(
        request,
        expected=RequestState.APPROVED,
        closed=RequestState.FAILED,
        reason=reason,
        actor=actor,
        now=resolve(now),
    )


def reject_request(
    *,
    request: CertificateRequest,
    reason: str,
    actor: str,
    reviewer: User | None = None,
    now: dt.datetime | None = None,
) -> CertificateRequest:
    """Reject a pending request with a reason."""
    if not reason.strip():
        raise PolicyViolation("a rejection needs a reason")
    return _close_request(
        request,
        expected=RequestState.PENDING,
        closed=RequestState.REJECTED,
        reason=reason.strip(),
        actor=actor,
        now=resolve(now),
        reviewer=reviewer,
        reviewed=True,
    )


def _ownership(
    *, profile: Profile, request: CertificateRequest | None, renewed_from: Certificate | None
) -> tuple[bool, int | None, str, str]:
    """auto_renew, renew_before_days, owner e-mail and webhook of a certificate about to be issued.

    A renewal keeps its predecessor's; a request's own choices win over the profile's defaults
    (ACME's requests say no: its client renews); a certificate without a request (KMI's own
    responder certificates) does not renew itself and names no owner of its own.
    """
    if renewed_from is not None:
        return (
            renewed_from.auto_renew,
            renewed_from.renew_before_days,
            renewed_from.owner_email,
            renewed_from.owner_webhook_url,
        )
    if request is None:
        return False, None, "", ""
    auto_renew = profile.auto_renew if request.auto_renew is None else request.auto_renew
    days = request.renew_before_days if request.renew_before_days is not None else profile.renew_before_days
    return auto_renew, days if auto_renew else None, request.owner_email, request.owner_webhook_url


def _sign_and_record(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    policy: ProfilePolicy,
    subject: Subject,
    validity_days: int,
    actor: str,
    now: dt.datetime,
    request: CertificateRequest | None = None,
    renewed_from: Certificate | None = None,
    key: Key | None = None,
    action: str = "certificate.issued",
    submitted: audit.PendingEvent | None = None,
    generation: CAGeneration | None = None,
    guard: Guard | None = None,
) -> Certificate:
    # ``generation``: sign with an older generation of the CA (its OCSP responder certificates
    # only: it keeps answering for what it issued after a rollover). Otherwise the current one.
    if generation is None or generation.number == ca.generation:
        ca_cert = ensure_can_sign(ca, now=now)
        signer, issuer_cert, issuer_name, number = (
            ca.key,
            ca.x509_certificate(),
            ca.repository_name,
            ca.generation,
        )
    else:
        ensure_generation_can_sign(generation, now=now)
        assert generation.certificate is not None
        ca_cert = generation.certificate
        signer, issuer_cert = generation.key, generation.x509_certificate()
        issuer_name, number = generation.repository_name, generation.number
    key_type = key_type_of(subject.public_key)
    # The issuer's notAfter caps the validity (a certificate never outlives its CA).
    not_before, not_after = validity_window(validity_days=validity_days, now=now, cap=ca_cert.not_after)
    serial = random_serial()
    # A partitioned CA names one CRL shard in the CDP; the row records it for publish_crl.
    crl_shard = None if policy.ocsp_no_check else shard_for(serial, ca.crl_shards)
    builder = end_entity_builder(
        subject=subject.name,
        public_key=subject.public_key,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        issuer=issuer_cert,
        issuer_ca_name=issuer_name,
        key_usage=policy.key_usage_for(key_type),
        extended_key_usage=policy.extended_key_usage_for(),
        sans=subject.sans,
        ocsp_no_check=policy.ocsp_no_check,
        crl_shard=crl_shard,
    )
    cert = get_backend(signer.backend).sign_certificate(
        signer.handle, builder, signature_hash(signer.key_type)
    )

    auto_renew, renew_before_days, owner_email, owner_webhook_url = _ownership(
        profile=profile, request=request, renewed_from=renewed_from
    )
    if auto_renew and renew_before_days is not None and renew_before_days >= validity_days:
        raise PolicyViolation(
            f"renewal {renew_before_days} days before expiry leaves nothing of a "
            f"{validity_days}-day certificate"
        )

    def event(row: Certificate) -> audit.PendingEvent:
        details: dict[str, object] = {
            "serial": row.serial,
            "subject": row.subject,
            "ca": ca.name,
            "profile": profile.name,
            "not_after": row.not_after.isoformat(),
        }
        if renewed_from is not None:
            details["renewed_from"] = renewed_from.serial
        return audit.pending_event(
            action=action, actor=actor, obj=row, details=details, scope=f"ca:{ca.pk}", now=now
        )

    # The row, its request's state and its audit event are written atomically (one statement on
    # PostgreSQL) and committed before this returns (unless the caller holds a transaction).
    row = record_issuance(
        cert,
        ca=ca,
        now=now,
        event=event,
        key=key,
        profile=profile,
        request=request,
        renewed_from=renewed_from,
        auto_renew=auto_renew,
        renew_before_days=renew_before_days,
        san_text="\n".join(str(s) for s in subject.sans),
        key_fingerprint=subject.key_fingerprint or spki_fingerprint(subject.public_key),
        crl_shard=crl_shard,
        owner_email=owner_email,
        owner_webhook_url=owner_webhook_url,
        # The requester owns the certificate; a renewal inherits its predecessor's owner.
        owner_id=renewed_from.owner_id
        if renewed_from is not None
        else (request.requester_id if request is not None else None),
        submitted=submitted,
        is_ca=False,  # end_entity_builder writes basicConstraints cA=FALSE
        issuer_generation=number,
        guard=guard,
    )
    cert_id, ca_id = row.pk, ca.pk
    transaction.on_commit(
        lambda: certificate_issued.send(sender=Certificate, certificate_id=cert_id, ca_id=ca_id)
    )
    if request is not None:
        request.state = RequestState.ISSUED
    return row


def issue_certificate(
    *,
    actor: str,
    request: CertificateRequest | None = None,
    ca: CertificateAuthority | None = None,
    profile: Profile | None = None,
    csr: CSRInput | None = None,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Sign and record a certificate: from an approved ``request``, or from ``ca``+``profile``+``csr``.

    The certificate and its audit event are committed together before this returns.
    """
    now = resolve(now)
    if request is not None:
        if request.state != RequestState.APPROVED:
            raise InvalidState(f"request {request.pk} is {request.state}, not approved")
        if request.renews_id is not None:
            return _issue_renewal(request, actor=actor, now=now)
        ca, profile = request.ca, request.profile
        # The caller that just checked this request's CSR may pass it on instead of a re-parse.
        checked = (
            csr
            if isinstance(csr, CheckedCSR) and csr.der == bytes(request.csr_der)
            else parse_csr(bytes(request.csr_der))
        )
        validity_days = request.validity_days
    elif ca is None or profile is None or csr is None:
        raise ValueError("issue_certificate needs a request, or a ca, a profile and a csr")
    else:
        checked = parse_csr(csr)
    check_before_signing(spki_sha256=checked.key_fingerprint, actor=actor, path="issue_certificate", now=now)
    policy = profile.policy()
    sans = check_request(ca=ca, policy=policy, csr=checked, validity_days=validity_days)
    return _sign_and_record(
        ca=ca,
        profile=profile,
        policy=policy,
        subject=Subject(checked.subject, sans, checked.public_key, checked.key_fingerprint),
        validity_days=policy.validity_for(validity_days),
        actor=actor,
        now=now,
        request=request,
    )


def issue_for_key(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    subject: x509.Name,
    key: Key,
    actor: str,
    validity_days: int | None = None,
    generation: CAGeneration | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Issue a certificate to a key KMI holds, without a CSR (e.g. a delegated OCSP responder's key).

    ``generation`` signs with that generation of ``ca`` (a previous one keeps certifying its own
    OCSP responder after a rollover); the current one by default.
    """
    now = resolve(now)
    policy = profile.policy()
    if policy.is_ca:
        raise PolicyViolation(f"profile {policy.name} issues CA certificates")
    public_key = issuer_public_key(key.public_key())
    ensure_not_blocked(public_key=public_key, actor=actor, path="issue_for_key", now=now)
    check_public_key(policy, public_key)
    return _sign_and_record(
        ca=ca,
        profile=profile,
        policy=policy,
        subject=Subject(subject, (), public_key),
        validity_days=policy.validity_for(validity_days),
        actor=actor,
        now=now,
        key=key,
        generation=generation,
    )


@dataclass(frozen=True)
class RenewalPlan:
    """A renewal that passed every check, ready to sign (or to submit for approval)."""

    certificate: Certificate
    ca: CertificateAuthority
    profile: Profile
    policy: ProfilePolicy
    subject: Subject
    checked: CheckedCSR | None


def check_renewer(*, certificate: Certificate, renewer: User) -> None:
    """Raise ``NotAuthorized`` unless ``renewer`` may renew ``certificate`` with their CURRENT grants.

    The user and their grants are read again: a grant revoked a moment ago counts.
    """
    from pki.access import Action, can

    fresh = User.objects.filter(pk=renewer.pk).first()
    if fresh is None or not can(fresh, Action.RENEW_CERTIFICATE, certificate):
        raise NotAuthorized(
            f"{renewer.get_username()} holds no current grant to renew certificate {certificate.serial}"
        )


def plan_renewal(
    *,
    certificate: Certificate,
    actor: str,
    renewer: User | None = None,
    csr: CSRInput | None = None,
    validity_days: int | None = None,
    new_key: Key | None = None,
    now: dt.datetime,
) -> RenewalPlan:
    """Apply every check of a renewal: it is an issuance (grant, blocklist, profile, CA constraints).

    The successor keeps the subject and may not add names; its key passes the profile and the
    blocklist; ``renewer`` (a person; None for KMI itself, the CLI) must still hold a grant.
    """
    if certificate.is_ca:
        raise InvalidState("CA certificates are renewed by CA rollover, not renew_certificate")
    if certificate.revoked_at is not None:
        raise InvalidState(f"certificate {certificate.serial} is revoked; issue a new one instead")
    profile = certificate.profile
    if profile is None or certificate.ca is None:
        raise InvalidState(f"certificate {certificate.serial} has no profile or CA to renew under")
    if csr is not None and new_key is not None:
        raise ValueError("renew_certificate takes a csr or a new_key, not both")
    if renewer is not None:
        check_renewer(certificate=certificate, renewer=renewer)
    ca = certificate.ca
    policy = profile.policy()
    old = certificate.x509()
    old_sans = certificate_sans(old)
    checked: CheckedCSR | None = None
    if csr is None:
        public_key = issuer_public_key((new_key or old).public_key())
        ensure_not_blocked(public_key=public_key, actor=actor, path="renew_certificate", now=now)
        # Policy may have tightened since the first issuance: the old key must still pass it.
        check_public_key(policy, public_key)
        subject = Subject(old.subject, old_sans, public_key)
    else:
        checked = parse_csr(csr)
        ensure_not_blocked(
            spki_sha256=checked.key_fingerprint, actor=actor, path="renew_certificate", now=now
        )
        if checked.subject != old.subject:
            # A renewal continues a certificate; a new subject is a new request (and its review).
            raise PolicyViolation(
                f"renewal keeps the subject {old.subject.rfc4514_string()!r}; the CSR names "
                f"{checked.subject.rfc4514_string()!r}: submit a new request"
            )
        sans = check_request(ca=ca, policy=policy, csr=checked, validity_days=validity_days)
        extra = sorted(set(sans) - set(old_sans))
        if extra:
            raise PolicyViolation(
                f"renewal may not add names: {', '.join(str(s) for s in extra)}; submit a new request"
            )
        subject = Subject(checked.subject, sans, checked.public_key, checked.key_fingerprint)
    for san in subject.sans:
        if not any(name_matches(san, p) for p in policy.allowed_names):
            raise PolicyViolation(f"{san} is no longer allowed by profile {policy.name}")
    _constraints_of(ca).check_sans(subject.sans)
    policy.validity_for(validity_days)
    return RenewalPlan(certificate, ca, profile, policy, subject, checked)


def renew_certificate(
    *,
    certificate: Certificate,
    actor: str,
    renewer: User | None = None,
    csr: CSRInput | None = None,
    validity_days: int | None = None,
    new_key: Key | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Issue a successor of ``certificate``: same key and names, or a new key from ``csr``.

    ``new_key`` (a key KMI holds, without a CSR) renews onto that key with the old names: the
    lifecycle's auto-renewal with ``KMI_AUTO_RENEW_NEW_KEY``. With a CSR the new key's names are
    checked against the profile like a new request, must not add names the old certificate did
    not have, and the subject must stay the same. Renewal is issuance: a profile that needs
    approval refuses with ``ApprovalRequired`` (``pki.renewal.renew`` submits it for review).
    """
    now = resolve(now)
    plan = plan_renewal(
        certificate=certificate,
        actor=actor,
        renewer=renewer,
        csr=csr,
        validity_days=validity_days,
        new_key=new_key,
        now=now,
    )
    if plan.policy.requires_approval:
        raise ApprovalRequired(
            f"profile {plan.policy.name} needs an operator's approval: the renewal of "
            f"{certificate.serial} must be submitted for review"
        )
    return _sign_and_record(
        ca=plan.ca,
        profile=plan.profile,
        policy=plan.policy,
        subject=plan.subject,
        validity_days=plan.policy.validity_for(validity_days),
        actor=actor,
        now=now,
        renewed_from=certificate,
        key=new_key if new_key is not None else (certificate.key if csr is None else None),
        action="certificate.renewed",
    )


def _renewal_plan_of(request: CertificateRequest, *, actor: str, now: dt.datetime) -> RenewalPlan:
    """Check a stored renewal request again, as its requester, against today's policy and grants."""
    certificate = Certificate.objects.select_related("ca", "profile", "key").get(
        pk=int(request.renews_id or 0)
    )
    csr_der = bytes(request.csr_der)
    return plan_renewal(
        certificate=certificate,
        actor=actor,
        renewer=request.requester,
        csr=csr_der or None,  # empty: the renewal keeps the certificate's key
        validity_days=request.validity_days,
        now=now,
    )


def _issue_renewal(request: CertificateRequest, *, actor: str, now: dt.datetime) -> Certificate:
    """Issue an approved renewal request: the successor of the certificate it renews."""
    plan = _renewal_plan_of(request, actor=actor, now=now)
    return _sign_and_record(
        ca=plan.ca,
        profile=plan.profile,
        policy=plan.policy,
        subject=plan.subject,
        validity_days=plan.policy.validity_for(request.validity_days),
        actor=actor,
        now=now,
        request=request,
        renewed_from=plan.certificate,
        key=plan.certificate.key if plan.checked is None else None,
        action="certificate.renewed",
    )


def chain_for(certificate: Certificate) -> Sequence[x509.Certificate]:
    """Return the certificate followed by its issuing chain up to (and including) the root.

    The chain follows the CA generation that signed each certificate, so a certificate issued
    before a rollover comes with the previous generation's CA certificate.
    """
    assert certificate.ca is not None
    return certificate_chain(certificate)


def latest_successor(certificate: Certificate) -> Certificate | None:
    """The newest unrevoked certificate that renewed ``certificate`` (following renewals of
    renewals), or None while it has none."""
    found: Certificate | None = None
    node = certificate
    for _ in range(100):  # a renewal chain is short; a loop in the records must not hang
        nxt = (
            Certificate.objects.filter(renewed_from=node, revoked_at__isnull=True)
            .select_related("ca", "profile")
            .order_by("-created_at", "-pk")
            .first()
        )
        if nxt is None:
            break
        found = node = nxt
    return found
