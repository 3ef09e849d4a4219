"""EST labels and their one-time enrollment codes: created, disabled and enabled through audited
use cases (``set_label_enabled`` serves SCEP labels too)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import AlreadyExists, PolicyViolation
from pki.models.authority import CertificateAuthority
from pki.models.device import EnrollmentCode, EstLabel, ScepLabel
from pki.models.profile import Profile

# A label is one path segment (RFC 7030 §3.2.2); the reserved operation names are not labels.
LABEL_NAME = re.compile(r"\A[a-z0-9][a-z0-9-]{0,63}\Z")
OPERATIONS = frozenset({"cacerts", "simpleenroll", "simplereenroll", "csrattrs", "serverkeygen", "fullcmc"})
CODE_ID_BYTES = 9  # 12 URL-safe characters: a lookup id, not a secret
CODE_SECRET_BYTES = 18  # 144 bits: a SHA-256 digest of it is safe to keep
MAX_CODES = 100_000  # one call: a fleet's provisioning list, not an unbounded loop
MAX_EXPIRES_DAYS = 3650


def check_label_name(name: str) -> str:
    """Refuse a name that is not one URL path segment or collides with an EST operation."""
    if not LABEL_NAME.match(name) or name in OPERATIONS:
        raise PolicyViolation(
            f"label {name!r}: 1-64 of a-z, 0-9 and -, starting with a letter or digit, "
            f"and not an EST operation name"
        )
    return name


def check_profile(profile: Profile) -> None:
    """Refuse a profile that issues CA certificates (devices get end-entity certificates)."""
    if profile.policy().is_ca:
        raise PolicyViolation(f"profile {profile.name} issues CA certificates: not for devices")


def create_est_label(
    *,
    name: str,
    ca: CertificateAuthority,
    profile: Profile,
    actor: str,
    client_cas: Sequence[CertificateAuthority] = (),
    serverkeygen: bool = False,
    is_default: bool = False,
    now: dt.datetime | None = None,
) -> EstLabel:
    """Create an EST label binding ``name`` to a CA and profile, with the CAs that authenticate
    devices by TLS client certificate."""
    now = resolve(now)
    check_label_name(name)
    check_profile(profile)
    with transaction.atomic():
        if EstLabel.objects.filter(name=name).exists():
            raise AlreadyExists(f"an EST label named {name!r} exists")
        if is_default and EstLabel.objects.filter(is_default=True).exists():
            raise AlreadyExists("another EST label answers /.well-known/est/ already")
        try:
            with transaction.atomic():
                label = EstLabel.objects.create(
                    name=name,
                    ca=ca,
                    profile=profile,
                    serverkeygen=serverkeygen,
                    is_default=is_default,
                    created_at=now,
                )
        except IntegrityError:
            raise AlreadyExists(f"an EST label named {name!r} exists") from None
        label.client_cas.set(client_cas)
        audit.record(
            action="est.label_created",
            actor=actor,
            obj=label,
            details={
                "ca": ca.name,
                "profile": profile.name,
                "client_cas": [c.name for c in client_cas],
                "serverkeygen": serverkeygen,
                "default": is_default,
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return label


def set_label_enabled(
    *, label: EstLabel | ScepLabel, enabled: bool, actor: str, now: dt.datetime | None = None
) -> EstLabel | ScepLabel:
    """Disable an EST or SCEP label (its URLs answer 404; codes, challenges and certificates are
    kept) or enable it again; audited as ``est.label_disabled``, ``scep.label_enabled`` …"""
    now = resolve(now)
    kind = "est" if isinstance(label, EstLabel) else "scep"
    with transaction.atomic():
        changed = type(label).objects.filter(pk=label.pk).exclude(enabled=enabled).update(enabled=enabled)
        label.enabled = enabled
        if changed:
            audit.record(
                action=f"{kind}.label_{'enabled' if enabled else 'disabled'}",
                actor=actor,
                obj=label,
                details={"name": label.name},
                scope=f"ca:{label.ca_id}",
                now=now,
            )
    return label


def secret_digest(secret: str) -> str:
    """SHA-256 (hex) of a high-entropy secret: what KMI keeps of codes and one-time challenges."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedCode:
    """A new enrollment code: the Basic user (``code_id``) and password (``secret``), shown once."""

    code_id: str
    secret: str
    not_after: dt.datetime


def create_enrollment_codes(
    *,
    label: EstLabel,
    actor: str,
    count: int = 1,
    expires_days: int = 7,
    now: dt.datetime | None = None,
) -> list[IssuedCode]:
    """Mint ``count`` one-time enrollment codes for ``label`` (one per device), expiring after
    ``expires_days``; only their digests are stored. One audit event for the batch."""
    now = resolve(now)
    if not 1 <= count <= MAX_CODES:
        raise PolicyViolation(f"count must be between 1 and {MAX_CODES}")
    if not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise PolicyViolation(f"expires-days must be between 1 and {MAX_EXPIRES_DAYS}")
    not_after = now + dt.timedelta(days=expires_days)
    issued = [
        IssuedCode(secrets.token_urlsafe(CODE_ID_BYTES), secrets.token_urlsafe(CODE_SECRET_BYTES), not_after)
        for _ in range(count)
    ]
    with transaction.atomic():
        EnrollmentCode.objects.bulk_create(
            [
                EnrollmentCode(
                    id=c.code_id,
                    label=label,
                    secret_sha256=secret_digest(c.secret),
                    not_after=not_after,
                    created_by=actor,
                    created_at=now,
                )
                for c in issued
            ],
            batch_size=2000,
        )
        audit.record(
            action="est.codes_created",
            actor=actor,
            obj=label,
            details={
                "count": count,
                "not_after": not_after.isoformat(),
                "ids": [c.code_id for c in issued[:100]],
            },
            scope=f"ca:{label.ca_id}",
            now=now,
        )
    return issued


def secret_matches(digest: str, secret: str) -> bool:
    """Constant-time comparison of a presented secret with a stored digest."""
    return hmac.compare_digest(digest, secret_digest(secret))
