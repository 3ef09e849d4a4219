"""Enrollment in one call: submit a CSR and, when the profile needs no approval, issue at once.

Signing in process (the default), both steps commit together, so a failure while signing
leaves no approved request behind without its certificate. With ``KMI_SIGNING=worker`` the
request is committed first (acknowledged) and then issued through ``pki.signing.run_signing``
on a signing worker; when no worker can be reached, ``SigningUnavailable`` leaves the request
approved, and submitting the same CSR again issues that stored request (once).
"""

from __future__ import annotations

import datetime as dt
from contextlib import nullcontext
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import connection, transaction

from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.exceptions import ApprovalRequired, SigningUnavailable
from pki.issuance import (
    NO_OPTIONS,
    CertificateOptions,
    CSRInput,
    approve_request,
    issue_certificate,
    parse_csr,
    submit_and_issue,
    submit_request,
)
from pki.models.access import ApiToken
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.profile import Profile
from pki.models.request import CertificateRequest, RequestState
from pki.recording import execute_prepared
from pki.signing import run_signing, signs_here
from pki.tokens import authenticate, authenticate_and_read


@dataclass(frozen=True)
class Enrollment:
    """The stored request and, when it was issued at once, its certificate."""

    request: CertificateRequest
    certificate: Certificate | None


def enroll(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: CSRInput,
    actor: str,
    requester: User | None = None,
    validity_days: int | None = None,
    options: CertificateOptions = NO_OPTIONS,
    issue: bool = True,
    now: dt.datetime | None = None,
) -> Enrollment:
    """Submit ``csr``; issue it at once (in the same transaction, or on a signing worker) when
    the profile auto-approves. ``options``: the owner to notify and auto-renewal. ``issue``
    False stops at ``approved`` (``approve_and_issue`` issues it later)."""
    now = resolve(now)
    if issue and signs_here():
        request, certificate = submit_and_issue(
            ca=ca,
            profile=profile,
            csr=csr,
            actor=actor,
            requester=requester,
            validity_days=validity_days,
            options=options,
            now=now,
        )
        return Enrollment(request=request, certificate=certificate)
    return _submit_then_issue(
        ca=ca,
        profile=profile,
        csr=csr,
        actor=actor,
        requester=requester,
        validity_days=validity_days,
        options=options,
        issue=issue,
        now=now,
    )


def _submit_then_issue(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: CSRInput,
    actor: str,
    requester: User | None,
    validity_days: int | None,
    options: CertificateOptions,
    issue: bool,
    now: dt.datetime,
) -> Enrollment:
    """Commit the request, then (``issue``) have a signing worker issue it (``KMI_SIGNING=worker``)."""
    checked = parse_csr(csr)
    # A retry of an enrollment the signer did not finish: the same requester, CA, profile and
    # CSR find the approved request stored the first time and issue that one.
    request = (
        CertificateRequest.objects.filter(
            ca=ca,
            profile=profile,
            requester=requester,
            key_fingerprint=checked.key_fingerprint,
            state=RequestState.APPROVED,
            csr_der=checked.der,
        )
        .select_related("ca", "profile")
        .order_by("pk")
        .first()
        if requester is not None
        else None
    )
    if request is None:
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
    if not issue or request.state != RequestState.APPROVED:
        return Enrollment(request=request, certificate=None)
    return Enrollment(
        request=request, certificate=issue_through_signer(request=request, actor=actor, user=requester)
    )


def issue_through_signer(*, request: CertificateRequest, actor: str, user: User | None = None) -> Certificate:
    """Issue a committed, approved request with ``run_signing("issue_request")`` and load the result.

    Raises ``SigningUnavailable`` (with ``request_id`` set) when no signer answered: the request
    stays approved.
    """
    try:
        result = run_signing("issue_request", request_id=request.pk, actor=actor, user=user)
    except SigningUnavailable as exc:
        exc.request_id = request.pk
        raise
    certificate = Certificate.objects.select_related("ca", "profile").get(pk=result["certificate_id"])
    request.state = RequestState.ISSUED
    return certificate


def issue_approved(request: CertificateRequest, *, actor: str) -> Certificate | None:
    """The certificate of ``request`` once it has one (None while it waits for approval).

    An approved request without its certificate (the signing worker had not answered when it
    was submitted or approved) is issued now, through the signing worker; a request issued
    already returns its certificate.
    """
    if request.state == RequestState.ISSUED:
        return Certificate.objects.filter(request=request).select_related("ca", "profile").first()
    if request.state == RequestState.APPROVED and not signs_here():
        return issue_through_signer(request=request, actor=actor)
    return None


def approve_and_issue(
    *,
    request: CertificateRequest,
    actor: str,
    reviewer: User | None = None,
    issue: bool = True,
    now: dt.datetime | None = None,
) -> Certificate | None:
    """Approve a pending request and, with its last required approval, issue its certificate.

    Returns None while the profile waits for more approvals (by other reviewers), or with
    ``issue`` False (approve only). A request approved already (its issuance never ran, or
    the signer did not finish it) is issued. Signing in process, approval and issuance commit
    together; with ``KMI_SIGNING=worker`` the approval is committed first and the signing
    worker issues it; when no worker answers, ``SigningUnavailable`` leaves it approved.
    """
    now = resolve(now)
    # Before any transaction, so a refusal's audit event is kept (approve_request checks again).
    ensure_not_blocked(spki_sha256=request.key_fingerprint, actor=actor, path="approve_request", now=now)
    in_process = signs_here()
    with transaction.atomic() if in_process else nullcontext():
        rows = CertificateRequest.objects.select_related("ca", "profile")
        # In process the row stays locked until it is issued: two callers never both issue it.
        fresh = (rows.select_for_update(of=("self",)) if in_process else rows).get(pk=request.pk)
        if fresh.state != RequestState.APPROVED:
            fresh = approve_request(request=fresh, actor=actor, reviewer=reviewer, now=now)
            if fresh.state != RequestState.APPROVED:
                return None
        if not issue:
            return None
        if in_process:
            return issue_certificate(request=fresh, actor=actor, now=now)
    return issue_through_signer(request=fresh, actor=actor, user=reviewer)


def sign_csr(
    *,
    ca: CertificateAuthority,
    profile: Profile,
    csr: CSRInput,
    actor: str,
    validity_days: int | None = None,
    options: CertificateOptions = NO_OPTIONS,
    now: dt.datetime | None = None,
) -> Certificate:
    """Submit, approve (as ``actor``, an operator) and issue in one step: ``enroll``, then
    ``approve_and_issue`` when the profile wants an approval. Signing in process it is one
    transaction (a signing failure leaves no approved request behind). A profile that needs
    more approvers keeps the request pending (committed) and raises ``ApprovalRequired``."""
    now = resolve(now)
    checked = parse_csr(csr)
    # Checked before the transaction too, so the refusal's audit event is kept.
    ensure_not_blocked(spki_sha256=checked.key_fingerprint, actor=actor, path="submit_request", now=now)
    with transaction.atomic() if signs_here() else nullcontext():
        enrollment = enroll(
            ca=ca,
            profile=profile,
            csr=checked,
            actor=actor,
            validity_days=validity_days,
            options=options,
            now=now,
        )
        certificate = enrollment.certificate
        if certificate is None:
            certificate = approve_and_issue(request=enrollment.request, actor=actor, now=now)
        if certificate is not None:
            return certificate
    request = enrollment.request
    raise ApprovalRequired(
        f"profile {profile.name} needs {profile.approvals_required} approvals by different "
        f"reviewers: request {request.pk} waits for them (approve_request {request.pk})"
    )


# --- CA and profile of a submission, cached per process ---------------------------------------
# Every enrollment names a CA and a profile. Loading them (CA + certificate + key, profile) and
# rebuilding what hangs off them (parsed CA certificate, name constraints, profile policy) costs
# more than the rest of an enrollment's database work, so each process keeps them and checks
# with ONE small query that nothing changed: the row versions (xmin, the id of the transaction
# that wrote the row; every UPDATE writes a new version) of the CA row, its key row, its
# certificate row and the profile row. Any change (state, key state or handle, revocation,
# constraints, profile edit) loads fresh objects. The versions are read before the objects, so
# a change in between only costs one more reload.
# The stamps of a CA (``ca`` joined with its key ``k`` and certificate ``c``) and of a profile
# (``p``): other hot queries that already join these rows select them too (EST's code lookup).
CA_STAMP_SQL = "ARRAY[ca.id::text, concat_ws('/', ca.xmin, k.xmin, c.xmin)]"
CA_STAMP_JOINS = (
    "LEFT JOIN pki_key k ON k.id = ca.key_id LEFT JOIN pki_certificate c ON c.id = ca.certificate_id"
)
PROFILE_STAMP_SQL = "ARRAY[p.id::text, p.xmin::text]"
# The two stamps as columns of a query (the names bound in this order), and as a query.
TARGET_COLUMNS = f"""
  (SELECT {CA_STAMP_SQL}
     FROM pki_certificateauthority ca {CA_STAMP_JOINS}
    WHERE ca.name = %s),
  (SELECT {PROFILE_STAMP_SQL} FROM pki_profile p WHERE p.name = %s)
"""  # noqa: S608 - constant fragments; the names are bound parameters
_TARGET_SQL = "SELECT " + TARGET_COLUMNS
_target_cache: dict[tuple[str, str], tuple[str, CertificateAuthority | Profile]] = {}


def _cached(kind: str, name: str, stamp: list[str] | None) -> CertificateAuthority | Profile | None:
    if stamp is None:
        return None
    pk, digest = int(stamp[0]), stamp[1]
    hit = _target_cache.get((kind, name))
    if hit is not None and hit[0] == digest and hit[1].pk == pk:
        return hit[1]
    obj: CertificateAuthority | Profile | None
    if kind == "ca":
        obj = CertificateAuthority.objects.select_related("certificate", "key").filter(pk=pk).first()
    else:
        obj = Profile.objects.filter(pk=pk).first()
    if obj is not None and not connection.in_atomic_block:
        # Only what is committed is shared with other requests.
        _target_cache[(kind, name)] = (digest, obj)
    return obj


def targets_from_stamps(
    *, ca_name: str, profile_name: str, ca_stamp: list[str] | None, profile_stamp: list[str] | None
) -> tuple[CertificateAuthority | None, Profile | None]:
    """The CA and profile whose stamps (``CA_STAMP_SQL``, ``PROFILE_STAMP_SQL``) a query read:
    the cached objects while the stamps are unchanged, else fresh ones (None for a missing stamp)."""
    found_ca = _cached("ca", ca_name, ca_stamp)
    found_profile = _cached("profile", profile_name, profile_stamp)
    return (
        found_ca if isinstance(found_ca, CertificateAuthority) else None,
        found_profile if isinstance(found_profile, Profile) else None,
    )


def load_targets(*, ca_name: str, profile_name: str) -> tuple[CertificateAuthority | None, Profile | None]:
    """The CA and profile of these names (None when missing), from the process cache when unchanged."""
    if connection.vendor != "postgresql":
        ca = CertificateAuthority.objects.select_related("certificate", "key").filter(name=ca_name).first()
        return ca, Profile.objects.filter(name=profile_name).first()
    row = execute_prepared(_TARGET_SQL, [ca_name, profile_name])
    ca_stamp, profile_stamp = (row[0], row[1]) if row is not None else (None, None)
    return targets_from_stamps(
        ca_name=ca_name, profile_name=profile_name, ca_stamp=ca_stamp, profile_stamp=profile_stamp
    )


def token_and_targets(
    token_text: str, *, ca_name: str, profile_name: str
) -> tuple[ApiToken | None, CertificateAuthority | None, Profile | None]:
    """``tokens.authenticate`` and ``load_targets`` in one round trip (on PostgreSQL): the REST
    API's enrollment reads the token, its user and grants, and the stamps of the CA and profile
    it names with one query. No CA or profile when the token is refused."""
    if connection.vendor != "postgresql":
        token = authenticate(token_text)
        if token is None:
            return None, None, None
        return token, *load_targets(ca_name=ca_name, profile_name=profile_name)
    token, stamps = authenticate_and_read(token_text, columns=TARGET_COLUMNS, params=[ca_name, profile_name])
    if token is None:
        return None, None, None
    ca, profile = targets_from_stamps(
        ca_name=ca_name, profile_name=profile_name, ca_stamp=stamps[0], profile_stamp=stamps[1]
    )
    return token, ca, profile
