"""SCEP labels (with their RA key and certificate) and one-time challenge passwords."""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509
from cryptography.x509.oid import NameOID
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.conf import pki_settings
from pki.est.labels import check_label_name, check_profile, secret_digest
from pki.exceptions import AlreadyExists, ConfigurationError, NotAuthenticated, NotFound, PolicyViolation
from pki.issuance import issue_for_key
from pki.keys import get_backend
from pki.keys.encrypted import EncryptedKeyBackend
from pki.keystore import generate_key
from pki.models.authority import CertificateAuthority
from pki.models.device import ScepChallenge, ScepLabel
from pki.models.key import KeyPurpose, KeyType
from pki.models.profile import Profile

RA_PROFILE = "scep-ra"  # seeded by migration 0019
RA_KEY_TYPE = KeyType.RSA_2048  # RFC 8894 §2.1: requests are encrypted to it (RSA key transport)
CHALLENGE_BYTES = 18
MIN_STATIC_CHALLENGE = 12
MAX_CHALLENGE_DAYS = 365


def static_challenge_hash(challenge: str) -> str:
    """The stored hash of a label's static challenge password ("" for none), its length checked."""
    if not challenge:
        return ""
    if len(challenge) < MIN_STATIC_CHALLENGE or len(challenge) > 128:
        raise PolicyViolation(f"a static challenge password has {MIN_STATIC_CHALLENGE}-128 characters")
    return make_password(challenge)


def create_scep_label(
    *,
    name: str,
    ca: CertificateAuthority,
    profile: Profile,
    actor: str,
    challenge: str = "",
    challenge_hash: str = "",
    now: dt.datetime | None = None,
) -> ScepLabel:
    """Create a SCEP label: generate its RSA RA key in the key backend, have ``ca`` certify it
    (profile ``scep-ra``), and keep a hash of the optional static ``challenge``.

    ``challenge_hash`` (``static_challenge_hash``'s) instead of ``challenge``: the signing job
    ``create_scep_label`` carries the hash, never the password.
    """
    now = resolve(now)
    check_label_name(name)
    check_profile(profile)
    if challenge and challenge_hash:
        raise ValueError("create_scep_label takes a challenge or its hash, not both")
    stored = static_challenge_hash(challenge) if challenge else challenge_hash
    if stored and not _is_password_hash(stored):
        raise PolicyViolation("the static challenge's hash is not one this KMI makes")
    ra_profile = Profile.objects.filter(name=RA_PROFILE).first()
    if ra_profile is None:
        raise NotFound(f"profile {RA_PROFILE} is missing (migration 0019 seeds it)")
    with transaction.atomic():
        if ScepLabel.objects.filter(name=name).exists():
            raise AlreadyExists(f"a SCEP label named {name!r} exists")
        key = generate_key(
            key_type=RA_KEY_TYPE,
            purpose=KeyPurpose.SCEP_RA,
            actor=actor,
            backend=ra_backend(),
            scope=f"ca:{ca.pk}",
        )
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"KMI SCEP RA {name}"[:64]),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"CA {ca.name}"[:64]),
            ]
        )
        certificate = issue_for_key(ca=ca, profile=ra_profile, subject=subject, key=key, actor=actor, now=now)
        label = ScepLabel.objects.create(
            name=name,
            ca=ca,
            profile=profile,
            static_challenge=stored,
            ra_key=key,
            ra_certificate=certificate,
            created_at=now,
        )
        audit.record(
            action="scep.label_created",
            actor=actor,
            obj=label,
            details={
                "ca": ca.name,
                "profile": profile.name,
                "ra_certificate": certificate.serial,
                "static_challenge": bool(stored),
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return label


def request_scep_label(
    *,
    name: str,
    ca: CertificateAuthority,
    profile: Profile,
    challenge: str,
    actor: str,
    user: object,
) -> ScepLabel:
    """``create_scep_label`` where signing runs (``run_signing``: here, or as a
    ``create_scep_label`` job on the signer, which holds the KEK and checks again that ``user``
    may manage device labels); the job carries the static challenge's hash, never the password.
    What the API and the console call."""
    from pki.signing import run_signing

    result = run_signing(
        "create_scep_label",
        user=user,
        name=name,
        ca_id=ca.pk,
        profile_id=profile.pk,
        challenge_hash=static_challenge_hash(challenge),
        actor=actor,
    )
    return ScepLabel.objects.get(pk=result["label_id"])


def _is_password_hash(value: str) -> bool:
    try:
        identify_hasher(value)
    except ValueError:
        return False
    return True


def enabled_label(*, name: str | None = None, pk: int | None = None) -> ScepLabel | None:
    """The enabled label of that name or id, with what a PKIOperation reads (CA, RA key, profile)."""
    lookup = {"name": name} if pk is None else {"pk": pk}
    return (
        ScepLabel.objects.select_related(
            "ca", "ca__certificate", "ca__key", "ra_key", "ra_certificate", "profile"
        )
        .filter(enabled=True, **lookup)
        .first()
    )


def ra_backend() -> str:
    """The key backend for an RA key, which must decrypt: the default backend when it is the
    encrypted one, else the configured ``encrypted`` backend (an HSM backend's keys only sign)."""
    conf = pki_settings()
    for alias in (conf.default_key_backend, "encrypted"):
        if alias in conf.key_backends and isinstance(get_backend(alias), EncryptedKeyBackend):
            return alias
    raise ConfigurationError("SCEP needs the encrypted key backend for its RA keys; none is configured")


def create_scep_challenge(
    *, label: ScepLabel, actor: str, expires_days: int = 7, now: dt.datetime | None = None
) -> str:
    """Mint a one-time challenge password for ``label``; return it (only its digest is kept)."""
    now = resolve(now)
    if not 1 <= expires_days <= MAX_CHALLENGE_DAYS:
        raise PolicyViolation(f"expires-days must be between 1 and {MAX_CHALLENGE_DAYS}")
    secret = secrets.token_urlsafe(CHALLENGE_BYTES)
    with transaction.atomic():
        row = ScepChallenge.objects.create(
            label=label,
            secret_sha256=secret_digest(secret),
            not_after=now + dt.timedelta(days=expires_days),
            created_by=actor,
            created_at=now,
        )
        audit.record(
            action="scep.challenge_created",
            actor=actor,
            obj=row,
            details={"label": label.name, "not_after": row.not_after.isoformat()},
            scope=f"ca:{label.ca_id}",
            now=now,
        )
    return secret


def use_challenge(*, label: ScepLabel, password: str, now: dt.datetime) -> str:
    """Check a challenge password and use it up when it is one-time (inside the caller's
    transaction, so a refused request leaves it usable); return the device's audit name."""
    if not password:
        raise NotAuthenticated("the request has no challengePassword")
    row = (
        ScepChallenge.objects.select_for_update()
        .filter(label=label, secret_sha256=secret_digest(password))
        .first()
    )
    if row is not None:
        if row.used_at is not None:
            raise NotAuthenticated(f"challenge {row.pk} is used")
        if row.not_after <= now:
            raise NotAuthenticated(f"challenge {row.pk} expired")
        row.used_at = now
        row.save(update_fields=["used_at"])
        return f"challenge:{row.pk}"
    if label.static_challenge and check_password(password, label.static_challenge):
        return "static"
    raise NotAuthenticated("wrong challenge password")
