"""Key lifecycle use cases: generate, activate, re-wrap under a new KEK."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.keys import get_backend
from pki.keys.encrypted import EncryptedKeyBackend, seal_secret
from pki.models.key import Key, KeyPurpose, KeyState, KeyType, SealedKey
from pki.x509.csr import spki_der, spki_fingerprint


def generate_key(
    *,
    key_type: KeyType | str,
    purpose: KeyPurpose | str,
    actor: str,
    backend: str | None = None,
    activate: bool = True,
    scope: str = "global",
    now: dt.datetime | None = None,
) -> Key:
    """Generate a key in its backend and record it (active unless ``activate`` is False)."""
    now = resolve(now)
    kt = KeyType(key_type)
    key_backend = get_backend(backend)
    key_id = uuid.uuid4()
    with transaction.atomic():
        handle, public_key = key_backend.generate(key_id=key_id, key_type=kt)
        key = Key.objects.create(
            id=key_id,
            key_type=kt,
            purpose=KeyPurpose(purpose),
            backend=key_backend.alias,
            handle=handle,
            public_key_der=spki_der(public_key),  # type: ignore[arg-type]
            spki_sha256=spki_fingerprint(public_key),  # type: ignore[arg-type]
            state=KeyState.ACTIVE if activate else KeyState.PRE_ACTIVATION,
            created_at=now,
            activated_at=now if activate else None,
        )
        audit.record(
            action="key.generated",
            actor=actor,
            obj=key,
            details={
                "key_type": kt.value,
                "purpose": key.purpose,
                "backend": key.backend,
                "spki_sha256": key.spki_sha256,
            },
            scope=scope,
            now=now,
        )
    return key


def rewrap_keys(
    *, actor: str, now: dt.datetime | None = None, progress: Callable[[int, int], None] | None = None
) -> int:
    """Re-wrap every sealed data key under the current KEK; return how many changed."""
    now = resolve(now)
    backend = EncryptedKeyBackend(alias="rewrap")
    current = backend._current_kek()[0]
    pending = list(SealedKey.objects.exclude(kek_id=current).values_list("key_id", flat=True))
    changed = 0
    for done, key_id in enumerate(pending, start=1):
        with transaction.atomic():
            old = SealedKey.objects.get(key_id=key_id).kek_id
            if backend.rewrap(str(key_id)):
                changed += 1
                audit.record(
                    action="key.rewrapped",
                    actor=actor,
                    object_type="key",
                    object_id=str(key_id),
                    details={"from_kek": old, "to_kek": current},
                    now=now,
                )
        if progress is not None:
            progress(done, len(pending))
    return changed


def rewrap_secrets(*, actor: str, now: dt.datetime | None = None) -> int:
    """Re-seal every ACME EAB HMAC key under the current KEK; return how many changed."""
    from pki.models.acme import EAB_SEAL_PURPOSE, AcmeExternalAccountKey

    now = resolve(now)
    current = EncryptedKeyBackend._current_kek()[0]
    changed = 0
    for pk in AcmeExternalAccountKey.objects.exclude(kek_id=current).values_list("pk", flat=True):
        with transaction.atomic():
            row = AcmeExternalAccountKey.objects.select_for_update().get(pk=pk)
            if row.kek_id == current:
                continue
            old = row.kek_id
            row.kek_id, row.sealed_hmac_key = seal_secret(
                purpose=EAB_SEAL_PURPOSE, name=row.key_id, plaintext=row.hmac_key()
            )
            row.save(update_fields=["kek_id", "sealed_hmac_key"])
            audit.record(
                action="acme.eab_key.rewrapped",
                actor=actor,
                obj=row,
                details={"from_kek": old, "to_kek": current},
                scope=f"acme:{row.endpoint_id}",
                now=now,
            )
            changed += 1
    return changed
