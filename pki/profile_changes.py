"""Editing a profile: the one audited way policy data changes after it was seeded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import PolicyViolation
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
