"""Editing a profile: the one audited way policy data changes after it was seeded."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import AlreadyExists, PolicyViolation
from pki.models.profile import Profile
from pki.profiles import ProfilePolicy

EDITABLE_FIELDS = frozenset(
    {
        "description",
        "validity_days",
        "default_validity_days",
        "key_types",
        "min_rsa_bits",
        "key_usage",
        "extended_key_usage",
        "allowed_names",
        "require_san",
        "requires_approval",
        "approvals_required",
        "ocsp_no_check",
        "escrow",
        "auto_renew",
        "renew_before_days",
    }
)


def update_profile(
    *, profile: Profile, changes: Mapping[str, Any], actor: str, now: dt.datetime | None = None
) -> Profile:
    """Apply ``changes`` to a profile if the result is a valid policy; audited with before/after."""
    now = resolve(now)
    unknown = sorted(set(changes) - EDITABLE_FIELDS)
    if unknown:
        raise PolicyViolation(f"profile fields that cannot be edited: {', '.join(unknown)}")
    with transaction.atomic():
        row = Profile.objects.select_for_update().get(pk=profile.pk)
        before = {name: getattr(row, name) for name in changes}
        for name, value in changes.items():
            setattr(row, name, value)
        ProfilePolicy.from_profile(row)  # raises PolicyViolation on an inconsistent profile
        changed = {name: [before[name], value] for name, value in changes.items() if before[name] != value}
        if not changed:
            return row
        row.save(update_fields=[*changed, "updated_at"])
        audit.record(action="profile.updated", actor=actor, obj=row, details={"changes": changed}, now=now)
    return row


PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def create_profile(
    *, name: str, values: Mapping[str, Any], actor: str, now: dt.datetime | None = None
) -> Profile:
    """Create an end-entity profile from the editable fields if they make a valid policy; audited.

    CA profiles are not created here: intermediates come from ``create_intermediate_ca``.
    """
    now = resolve(now)
    if not PROFILE_NAME.match(name):
        raise PolicyViolation(
            f"profile name {name!r}: 1-64 of a-z, 0-9, - and _, starting with a letter or digit"
        )
    unknown = sorted(set(values) - EDITABLE_FIELDS)
    if unknown:
        raise PolicyViolation(f"profile fields that cannot be set: {', '.join(unknown)}")
    with transaction.atomic():
        if Profile.objects.filter(name=name).exists():
            raise AlreadyExists(f"a profile named {name!r} exists")
        row = Profile(name=name, **values)
        ProfilePolicy.from_profile(row)  # raises PolicyViolation on an inconsistent profile
        row.save(force_insert=True)
        audit.record(
            action="profile.created",
            actor=actor,
            obj=row,
            details={"name": name, "values": {k: values[k] for k in sorted(values)}},
            now=now,
        )
    return row
