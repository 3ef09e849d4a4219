"""Separation of duties for CA creation: an administrator asks for a CA, other administrators
approve, and only then is its key made.

1. An administrator asks (``request_ca_creation``): the request is checked as the creation will be
   (``pki.authorities.plan_ca``) and kept as a ``CACreation`` row with its parameters.
2. ``KMI_CA_CREATION_APPROVALS`` distinct administrators other than the one who asked approve
   (``approve_ca_creation``); the one who asked cannot. With ``0`` the CA is made at once.
3. The last approval makes the CA through the audited use case (``create_approved_ca``), where
   signing runs (``pki.signing``): with ``KMI_SIGNING=worker`` the signer re-reads the row and
   refuses it unless it is approved and the job's user approved it (``pki.signing_channel``).

Any administrator, the one who asked included, may reject a request that is still open
(``reject_ca_creation``). Every step, and every refusal, is audited. The command line
(``init_ca``: the shell that holds the KEK) creates CAs directly, audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from pki import audit
from pki.access import Action, can, forget_grants
from pki.authorities import create_intermediate_ca, create_root_ca, plan_ca
from pki.clock import resolve
from pki.exceptions import (
    InvalidState,
    NotAuthorized,
    PKIError,
    PolicyViolation,
    SeparationOfDuties,
    SigningUnavailable,
)
from pki.models.authority import CACreation, CertificateAuthority
from pki.models.key import TwoPersonState
from pki.settings_registry import coerce
from pki.x509.names import parse_subject

OPEN = (TwoPersonState.PENDING, TwoPersonState.APPROVED)
MAX_REASON_CHARS = 1000


def approvals_required() -> int:
    """``KMI_CA_CREATION_APPROVALS``: administrators other than the requester who must approve."""
    value: int = coerce("KMI_CA_CREATION_APPROVALS", getattr(settings, "KMI_CA_CREATION_APPROVALS", None))
    return value


def _audit(row: CACreation, action: str, actor: str, now: dt.datetime, **details: Any) -> None:
    audit.record(
        action=action,
        actor=actor,
        object_type="ca_creation",
        object_id=str(row.pk),
        details={"name": row.name, **details},
        now=now,
    )


def _refused(row: CACreation, exc: PKIError, *, actor: str, now: dt.datetime) -> PKIError:
    """Audit a refused step (in its own transaction, after the step's rolled back) and return the
    error to raise."""
    with transaction.atomic():
        _audit(row, "ca.creation_refused", actor, now, reason=str(exc))
    return exc


def _review_problem(row: CACreation, reviewer: User, *, states: tuple[str, ...]) -> PKIError | None:
    """Why ``reviewer`` may not decide on ``row`` now (its state, their current grants), or None."""
    if row.state not in states:
        return InvalidState(f"CA creation {row.pk} is {row.state}")
    forget_grants(reviewer)  # the administrator's grants as they are now
    if not can(reviewer, Action.CREATE_CA):
        return NotAuthorized(f"{reviewer.get_username()} may not create CAs")
    return None


def request_ca_creation(
    *,
    name: str,
    subject: str,
    parent: CertificateAuthority | None,
    key_type: str,
    validity_days: int,
    path_length: int | None = None,
    name_constraints: Mapping[str, Any] | None = None,
    requester: User,
    actor: str,
    now: dt.datetime | None = None,
) -> CACreation:
    """An administrator asks for a CA; it is made once other administrators approve (at once when
    ``KMI_CA_CREATION_APPROVALS`` is 0). Bad requests are refused before anything is stored."""
    now = resolve(now)
    forget_grants(requester)
    if not can(requester, Action.CREATE_CA):
        raise NotAuthorized(f"{requester.get_username()} may not create CAs")
    parse_subject(subject)
    plan_ca(
        name=name,
        parent=parent,
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        name_constraints=name_constraints,
        now=now,
    )
    required = approvals_required()
    waiting = InvalidState(f"a CA named {name!r} is already waiting for approval")
    with transaction.atomic():
        if CACreation.objects.filter(name=name, state__in=OPEN).exists():
            raise waiting
        try:
            with transaction.atomic():  # one open creation per name (a constraint): a race loses here
                row = CACreation.objects.create(
                    name=name,
                    parent=parent,
                    subject=subject,
                    key_type=key_type,
                    validity_days=validity_days,
                    path_length=path_length,
                    name_constraints=dict(name_constraints) if name_constraints else None,
                    state=TwoPersonState.APPROVED if required == 0 else TwoPersonState.PENDING,
                    approvals_required=required,
                    requester=requester,
                    requested_by=actor,
                    created_at=now,
                )
        except IntegrityError:
            raise waiting from None
        _audit(
            row,
            "ca.creation_requested",
            actor,
            now,
            subject=subject,
            parent=parent.name if parent is not None else None,
            key_type=key_type,
            validity_days=validity_days,
            approvals_required=required,
        )
    if required == 0:
        return _create(row, user=requester, actor=actor, now=now)
    return row


def approve_ca_creation(
    *, creation: CACreation, approver: User, actor: str, now: dt.datetime | None = None
) -> CACreation:
    """One administrator's approval; the last one needed makes the CA. The one who asked, or one who
    approved already, cannot approve."""
    now = resolve(now)
    with transaction.atomic():
        row = CACreation.objects.select_for_update().get(pk=creation.pk)
        problem = _review_problem(row, approver, states=(TwoPersonState.PENDING,))
        if problem is None and approver.pk == row.requester_id:
            problem = SeparationOfDuties(
                f"you asked for CA {row.name}: another administrator must approve its creation"
            )
        elif problem is None and approver.pk in row.approver_ids():
            problem = SeparationOfDuties(
                f"you approved CA {row.name} already: it needs another administrator"
            )
        approved = False
        if problem is None:
            row.approvals = [*row.approvals, {"user": approver.pk, "by": actor, "at": now.isoformat()}]
            approved = len(row.approvals) >= row.approvals_required
            if approved:
                row.state, row.decided_by, row.decided_at = TwoPersonState.APPROVED, actor, now
            row.save(update_fields=["approvals", "state", "decided_by", "decided_at"])
            _audit(
                row,
                "ca.creation_approved" if approved else "ca.creation_approval_recorded",
                actor,
                now,
                requested_by=row.requested_by,
                approvals=len(row.approvals),
                required=row.approvals_required,
                approvers=[a["by"] for a in row.approvals],
            )
    if problem is not None:
        raise _refused(row, problem, actor=actor, now=now)
    if approved:
        return _create(row, user=approver, actor=actor, now=now)
    return row


def reject_ca_creation(
    *, creation: CACreation, reviewer: User, actor: str, reason: str, now: dt.datetime | None = None
) -> CACreation:
    """An administrator (the one who asked included: a withdrawal) turns down an open CA creation:
    pending, or approved but not made yet (its queued job then refuses to make it)."""
    now = resolve(now)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise PolicyViolation(
            f"a rejection needs a reason of 1 to {MAX_REASON_CHARS} characters (it is audited)"
        )
    with transaction.atomic():
        row = CACreation.objects.select_for_update().get(pk=creation.pk)
        # An approved creation whose CA is not made yet (no signer took its job) can be closed too.
        problem = _review_problem(row, reviewer, states=OPEN)
        if problem is None:
            row.state, row.reason = TwoPersonState.CANCELLED, reason
            row.decided_by, row.decided_at = actor, now
            row.save(update_fields=["state", "reason", "decided_by", "decided_at"])
            _audit(row, "ca.creation_rejected", actor, now, reason=reason, requested_by=row.requested_by)
    if problem is not None:
        raise _refused(row, problem, actor=actor, now=now)
    return row


def _create(row: CACreation, *, user: User, actor: str, now: dt.datetime) -> CACreation:
    """Make an approved creation's CA where signing runs. A creation that cannot succeed (its name
    was taken meanwhile, its parent disabled) is closed, audited ``ca.creation_failed``; one that
    found no signer stays approved and its queued job makes the CA when a signer takes it."""
    from pki.signing import run_signing

    try:
        run_signing("create_ca", creation_id=row.pk, actor=actor, user=user)
    except SigningUnavailable:
        raise
    except PKIError as exc:
        with transaction.atomic():
            row = CACreation.objects.select_for_update().get(pk=row.pk)
            if row.state == TwoPersonState.APPROVED:
                row.state, row.reason = TwoPersonState.CANCELLED, str(exc)[:MAX_REASON_CHARS]
                row.save(update_fields=["state", "reason"])
                _audit(row, "ca.creation_failed", actor, now, reason=row.reason)
        raise
    return CACreation.objects.select_related("ca", "parent").get(pk=row.pk)


def create_approved_ca(*, creation_id: int, actor: str) -> tuple[CertificateAuthority, bool]:
    """Make the CA an approved ``CACreation`` describes, once (where signing runs); return it and
    whether it had been made already (a replayed job)."""
    with transaction.atomic():
        row = (
            CACreation.objects.select_for_update(of=("self",))
            .select_related("ca", "parent")
            .get(pk=creation_id)
        )
        if row.state == TwoPersonState.DONE and row.ca is not None:
            return row.ca, True
        if row.state != TwoPersonState.APPROVED:
            raise InvalidState(f"CA creation {row.pk} is {row.state}: only an approved creation is made")
        common: dict[str, Any] = {
            "name": row.name,
            "subject": parse_subject(row.subject),
            "key_type": row.key_type,
            "validity_days": row.validity_days,
            "path_length": row.path_length,
            "name_constraints": row.name_constraints,
            "actor": actor,
        }
        if row.parent is not None:
            ca = create_intermediate_ca(parent=row.parent, **common)
        else:
            ca = create_root_ca(**common)
        row.state, row.ca = TwoPersonState.DONE, ca
        row.save(update_fields=["state", "ca"])
    return ca, False
