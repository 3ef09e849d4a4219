"""Key destruction: crypto-shred the private key, keep the record marked destroyed.

A CA key is destroyed only by two people: one administrator asks (``request_key_destruction``),
a different one approves (``approve_key_destruction``), and only then is it erased. The
scheduled retention job (``pki.lifecycle.destroy_keys_past_retention``) destroys deactivated
keys by the policy administrators set (``KMI_KEY_RETENTION_DAYS``), without a second person.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.access import Action, can, forget_grants
from pki.clock import resolve
from pki.exceptions import InvalidState, PolicyViolation
from pki.keys import get_backend
from pki.models.authority import CAState
from pki.models.key import Key, KeyDestruction, KeyPurpose, KeyState, TwoPersonState


def _check_destroyable(key: Key) -> None:
    if key.authorities.exclude(state=CAState.DISABLED).exists():
        raise InvalidState(f"key {key.pk} belongs to a CA that is not disabled; disable the CA first")


def destroy_key(
    *,
    key: Key,
    actor: str,
    reason: str = "",
    now: dt.datetime | None = None,
    approved: KeyDestruction | None = None,
    retention: bool = False,
) -> Key:
    """Erase a key's private material in its backend; the row stays, marked destroyed, with who and when.

    Refuses the key of a CA that may still sign (disable or retire the CA first), and a CA key
    unless two administrators agreed (``approved``) or its retention period ended
    (``retention``, the scheduled job). Idempotent.
    """
    now = resolve(now)
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        if key.state == KeyState.DESTROYED:
            return key
        _check_destroyable(key)
        two_people = (
            approved is not None and approved.key_id == key.pk and approved.state == TwoPersonState.APPROVED
        )
        if key.purpose == KeyPurpose.CA and not (two_people or retention):
            raise PolicyViolation(
                "destroying a CA key needs two administrators: one asks (key_state KEY destroy), "
                "a different one approves"
            )
        if key.handle:
            get_backend(key.backend).destroy(key.handle)
        previous = key.state
        key.state = KeyState.DESTROYED
        key.destroyed_at = now
        key.destroyed_by = actor if approved is None else f"{approved.requested_by} + {approved.approved_by}"
        key.handle = ""
        key.save(update_fields=["state", "destroyed_at", "destroyed_by", "handle"])
        audit.record(
            action="key.destroyed",
            actor=actor,
            obj=key,
            details={"previous_state": previous, "reason": reason, "backend": key.backend},
            now=now,
        )
    return key


def request_key_destruction(
    *, key: Key, actor: str, requester: User | None = None, reason: str = "", now: dt.datetime | None = None
) -> KeyDestruction:
    """An administrator asks to destroy a CA key; a different administrator must approve."""
    now = resolve(now)
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        if key.state == KeyState.DESTROYED:
            raise InvalidState(f"key {key.pk} is destroyed already")
        if key.purpose != KeyPurpose.CA:
            raise PolicyViolation(f"key {key.pk} is not a CA key: it is destroyed without a second person")
        _check_destroyable(key)
        pending = KeyDestruction.objects.filter(key=key, state=TwoPersonState.PENDING).first()
        if pending is not None:
            raise InvalidState(
                f"{pending.requested_by} asked to destroy key {key.pk} already; "
                "a different administrator approves"
            )
        row = KeyDestruction.objects.create(
            key=key, reason=reason, requester=requester, requested_by=actor, created_at=now
        )
        audit.record(
            action="key.destruction_requested",
            actor=actor,
            obj=key,
            details={"request": row.pk, "reason": reason},
            now=now,
        )
    return row


def approve_key_destruction(
    *, destruction: KeyDestruction, actor: str, approver: User | None = None, now: dt.datetime | None = None
) -> Key:
    """A second administrator approves: the CA key is destroyed now. The one who asked cannot approve."""
    now = resolve(now)
    with transaction.atomic():
        row = KeyDestruction.objects.select_for_update().select_related("key").get(pk=destruction.pk)
        if row.state != TwoPersonState.PENDING:
            raise InvalidState(f"the destruction request {row.pk} is {row.state}")
        same_user = approver is not None and row.requester_id is not None and approver.pk == row.requester_id
        if same_user or actor == row.requested_by:
            raise PolicyViolation("the administrator who asked to destroy a CA key cannot also approve it")
        if approver is not None:
            forget_grants(approver)  # the approver's authority as it is now
            if not can(approver, Action.MANAGE_KEY, row.key):
                raise PolicyViolation(f"{approver.get_username()} is not an administrator: only one approves")
        row.state, row.approver, row.approved_by = TwoPersonState.APPROVED, approver, actor
        row.save(update_fields=["state", "approver", "approved_by"])
        audit.record(
            action="key.destruction_approved",
            actor=actor,
            obj=row.key,
            details={"request": row.pk, "requested_by": row.requested_by},
            now=now,
        )
    # Erased where the key's material lives (the signer with KMI_SIGNING=worker), once committed.
    return _destroy_where_signing_runs(
        key=row.key, actor=actor, user=approver, reason=row.reason, destruction=row
    )


def finish_key_destruction(
    *, destruction_id: int, key_id: str, actor: str, now: dt.datetime | None = None
) -> Key:
    """Destroy the key of an approved CA-key destruction and mark it done (a replay returns the key)."""
    now = resolve(now)
    with transaction.atomic():
        row = (
            KeyDestruction.objects.select_for_update().select_related("key").filter(pk=destruction_id).first()
        )
        if row is None or str(row.key_id) != str(key_id):
            raise InvalidState(f"no destruction {destruction_id} of key {key_id}")
        if row.state == TwoPersonState.DONE:
            return row.key
        if row.state != TwoPersonState.APPROVED:
            raise InvalidState(f"the destruction request {row.pk} is {row.state}, not approved")
        key = destroy_key(key=row.key, actor=actor, reason=row.reason, approved=row, now=now)
        row.state, row.done_at = TwoPersonState.DONE, now
        row.save(update_fields=["state", "done_at"])
    return key


def _destroy_where_signing_runs(
    *, key: Key, actor: str, user: User | None, reason: str, destruction: KeyDestruction | None = None
) -> Key:
    """``destroy_key`` (or ``finish_key_destruction``) through ``run_signing``: the one place that
    decides where key material is handled (an HSM key is reached from the signer)."""
    from pki.signing import run_signing

    run_signing(
        "destroy_key",
        key_id=str(key.pk),
        reason=reason,
        destruction_id=destruction.pk if destruction is not None else None,
        actor=actor,
        user=user,
    )
    return Key.objects.get(pk=key.pk)


def destroy_or_ask(
    *, key: Key, actor: str, user: User | None = None, reason: str = "", now: dt.datetime | None = None
) -> tuple[Key, KeyDestruction | None]:
    """``key_state KEY destroy``: a key that is not a CA's is destroyed at once; for a CA key the
    first administrator's call asks, a different administrator's call approves (and destroys)."""
    if key.purpose != KeyPurpose.CA:
        return _destroy_where_signing_runs(key=key, actor=actor, user=user, reason=reason), None
    pending = KeyDestruction.objects.filter(key=key, state=TwoPersonState.PENDING).first()
    if pending is None:
        # Approved while no signer answered: the same call finishes it.
        approved = KeyDestruction.objects.filter(key=key, state=TwoPersonState.APPROVED).first()
        if approved is not None:
            done = _destroy_where_signing_runs(
                key=key, actor=actor, user=user, reason=approved.reason, destruction=approved
            )
            return done, None
        return key, request_key_destruction(key=key, actor=actor, requester=user, reason=reason, now=now)
    return approve_key_destruction(destruction=pending, actor=actor, approver=user, now=now), None
