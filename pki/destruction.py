"""Key destruction: crypto-shred the private key, keep the record marked destroyed."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import InvalidState
from pki.keys import get_backend
from pki.models.authority import CAState
from pki.models.key import Key, KeyState


def destroy_key(*, key: Key, actor: str, reason: str = "", now: dt.datetime | None = None) -> Key:
    """Erase a key's private material in its backend; the row stays, marked destroyed, with who and when.

    Refuses the key of a CA that may still sign (disable or retire the CA first). Idempotent.
    """
    now = resolve(now)
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        if key.state == KeyState.DESTROYED:
            return key
        if key.authorities.exclude(state=CAState.DISABLED).exists():
            raise InvalidState(f"key {key.pk} belongs to a CA that is not disabled; disable the CA first")
        if key.handle:
            get_backend(key.backend).destroy(key.handle)
        previous = key.state
        key.state = KeyState.DESTROYED
        key.destroyed_at = now
        key.destroyed_by = actor
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
