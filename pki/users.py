"""People: console accounts, their second factor and their sign-ins, each change audited.

Roles are granted in ``pki.access``; this module holds what comes before a role: the account
itself (created, (de)activated, its password set by an administrator), its TOTP device
(RFC 6238, django-otp) and the record of who signed in from where.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from pki import audit
from pki.access import AnyUser, grants_for
from pki.clock import resolve
from pki.exceptions import AlreadyExists, InvalidState, PolicyViolation
from pki.models.access import Role, RoleGrant

USERNAME_MAX = 150


def totp_for_all() -> bool:
    """``KMI_CONSOLE_TOTP_FOR_ALL``: every console user needs a second factor."""
    return bool(getattr(settings, "KMI_CONSOLE", {}).get("TOTP_FOR_ALL", False))


def second_factor_required(user: AnyUser | None) -> bool:
    """True when ``user`` must sign in with a TOTP code: administrators (and superusers) and CA
    operators always (they approve, issue and revoke), everyone with ``KMI_CONSOLE_TOTP_FOR_ALL``."""
    if user is None or not user.is_authenticated:
        return False
    g = grants_for(user)
    return totp_for_all() or g.administrator or bool(g.operator_cas)


def _password_errors(password: str, user: User | None) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise PolicyViolation(" ".join(exc.messages)) from None


def create_user(
    *, username: str, actor: str, password: str, email: str = "", now: dt.datetime | None = None
) -> User:
    """Create an active account with a password (checked by the password validators); audited."""
    now = resolve(now)
    username = username.strip()
    if not username or len(username) > USERNAME_MAX:
        raise PolicyViolation(f"a user name has 1 to {USERNAME_MAX} characters")
    _password_errors(password, User(username=username, email=email))
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise AlreadyExists(f"a user named {username!r} exists")
        user = User.objects.create_user(username=username, email=email, password=password)
        audit.record(action="user.created", actor=actor, obj=user, details={"username": username}, now=now)
    return user


def _active_administrators() -> set[int]:
    admins = set(
        RoleGrant.objects.filter(role=Role.ADMINISTRATOR, user__is_active=True).values_list(
            "user_id", flat=True
        )
    )
    admins |= set(User.objects.filter(is_superuser=True, is_active=True).values_list("pk", flat=True))
    return admins


def set_user_active(*, user: User, active: bool, actor: str, now: dt.datetime | None = None) -> User:
    """Deactivate an account (it can no longer sign in or use its tokens) or activate it again.

    The last active administrator is never deactivated: nobody could grant roles afterwards.
    """
    now = resolve(now)
    with transaction.atomic():
        row = User.objects.select_for_update().get(pk=user.pk)
        if row.is_active == active:
            return row
        if not active and _active_administrators() == {row.pk}:
            raise InvalidState(f"{row.username} is the last active administrator")
        row.is_active = active
        row.save(update_fields=["is_active"])
        audit.record(
            action="user.activated" if active else "user.deactivated",
            actor=actor,
            obj=row,
            details={"username": row.username},
            now=now,
        )
    return row


def set_password(*, user: User, password: str, actor: str, now: dt.datetime | None = None) -> User:
    """Give an account a new password (checked by the password validators); audited, never logged."""
    now = resolve(now)
    _password_errors(password, user)
    with transaction.atomic():
        row = User.objects.select_for_update().get(pk=user.pk)
        row.set_password(password)
        row.save(update_fields=["password"])
        audit.record(
            action="user.password_set", actor=actor, obj=row, details={"username": row.username}, now=now
        )
    return row


# --- second factor -------------------------------------------------------------------------------
def totp_device(user: User) -> TOTPDevice | None:
    """The user's confirmed TOTP device, if any."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def pending_totp_device(user: User) -> TOTPDevice:
    """The unconfirmed TOTP device a user is enrolling (a new secret when there is none)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="console", confirmed=False)
    return device


def confirm_totp_device(
    *, device: TOTPDevice, token: str, address: str = "", now: dt.datetime | None = None
) -> TOTPDevice:
    """Confirm an enrolling device with a code it produced (proof the user holds the secret); audited."""
    now = resolve(now)
    with transaction.atomic():
        row = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if row.confirmed:
            raise InvalidState("this TOTP device is confirmed already")
        if TOTPDevice.objects.filter(user_id=row.user_id, confirmed=True).exists():
            raise InvalidState("the account has a TOTP device already; an administrator resets it first")
        if not row.verify_token(token):
            raise PolicyViolation("that code is not valid; check the authenticator's clock and try again")
        row.confirmed = True
        row.save(update_fields=["confirmed"])
        audit.record(
            action="user.totp_enrolled",
            actor=row.user.get_username(),
            obj=row.user,
            details={"device": row.persistent_id, "address": address},
            now=now,
        )
    return row


def reset_totp(*, user: User, actor: str, now: dt.datetime | None = None) -> int:
    """Remove an account's TOTP devices (a lost phone): its next sign-in enrols a new one; audited."""
    now = resolve(now)
    with transaction.atomic():
        devices = list(TOTPDevice.objects.select_for_update().filter(user=user))
        if not devices:
            return 0
        audit.record(
            action="user.totp_reset",
            actor=actor,
            obj=user,
            details={"username": user.get_username(), "devices": [d.persistent_id for d in devices]},
            now=now,
        )
        TOTPDevice.objects.filter(pk__in=[d.pk for d in devices]).delete()
    return len(devices)


# --- sign-ins ------------------------------------------------------------------------------------
def record_sign_in(*, user: User, address: str, second_factor: str, now: dt.datetime | None = None) -> None:
    """Audit a completed console sign-in (``second_factor``: ``totp`` or ``none``)."""
    with transaction.atomic():
        audit.record(
            action="user.signed_in",
            actor=user.get_username(),
            obj=user,
            details={"address": address, "second_factor": second_factor},
            now=resolve(now),
        )


def record_sign_out(*, user: User, address: str, now: dt.datetime | None = None) -> None:
    """Audit a console sign-out."""
    with transaction.atomic():
        audit.record(
            action="user.signed_out",
            actor=user.get_username(),
            obj=user,
            details={"address": address},
            now=resolve(now),
        )
