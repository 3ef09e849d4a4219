"""ACME endpoint administration: create an endpoint with its policy, mint EAB keys, check identifiers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import AlreadyExists, InvalidState, NameNotAllowed, PolicyViolation
from pki.keys.encrypted import seal_secret
from pki.models.acme import EAB_SEAL_PURPOSE, AcmeEndpoint, AcmeExternalAccountKey
from pki.models.authority import CertificateAuthority
from pki.models.profile import Profile
from pki.profiles import KEY_FAMILIES, name_matches, validate_name_pattern
from pki.x509.constraints import NameConstraints
from pki.x509.names import SAN, validate_dns_name

from .exceptions import Malformed, RejectedIdentifier, UnsupportedIdentifier
from .jws import b64u_encode

EAB_KEY_BYTES = 32  # an HS256 key as long as its output
# The name is a path segment of every ACME URL (web/protocols/acme routes it as a slug).
ENDPOINT_NAME = re.compile(r"\A[a-z0-9][a-z0-9-]{0,63}\Z")


# A DNS glob label: ``*`` (one label), ``**`` (one or more), or letters, digits, hyphens and ``*``.
_GLOB_LABEL = re.compile(r"\A(?:\*\*|[a-z0-9*](?:[a-z0-9*-]{0,61}[a-z0-9*])?)\Z")
MAX_PATTERNS = 256


def _pattern(text: str) -> str:
    """Accept ``*.example.test`` or ``10.0.0.0/8`` as shorthand for ``dns:…`` / ``ip:…``."""
    if ":" in text and text.split(":", 1)[0] in {"dns", "ip", "email", "uri"}:
        pattern = validate_name_pattern(text)
    else:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            pattern = validate_name_pattern(f"dns:{text.lower()}")
        else:
            pattern = validate_name_pattern(f"ip:{text}")
    kind, _, value = pattern.partition(":")
    if kind == "dns" and (
        len(value) > 253 or value != value.lower() or not all(_GLOB_LABEL.match(x) for x in value.split("."))
    ):
        raise PolicyViolation(f"{text!r} is not a DNS name pattern (labels of a-z, 0-9, -, * or **)")
    return pattern


def identifier_patterns(allowed: Sequence[str]) -> list[str]:
    """Normalise an endpoint's allowed identifiers to ``dns:…`` / ``ip:…`` patterns, or refuse them."""
    if len(allowed) > MAX_PATTERNS:
        raise PolicyViolation(f"at most {MAX_PATTERNS} identifier patterns")
    patterns = [_pattern(p) for p in allowed]
    for p in patterns:
        if not p.startswith(("dns:", "ip:")):
            raise PolicyViolation(f"ACME identifiers are dns or ip names, not {p!r}")
    return list(dict.fromkeys(patterns))


def check_policy(profile: Profile, validity_days: int | None, key_types: Sequence[str]) -> None:
    """Refuse a profile ACME cannot issue under, a validity past its cap or an unknown key type."""
    policy = profile.policy()
    if policy.is_ca or policy.requires_approval:
        raise PolicyViolation(f"profile {profile.name} needs an operator; ACME issues without one")
    if validity_days is not None:
        policy.validity_for(validity_days)
    for kt in key_types:
        if kt not in KEY_FAMILIES:
            raise PolicyViolation(f"unknown key type {kt!r}")


def create_endpoint(
    *,
    name: str,
    ca: CertificateAuthority,
    profile: Profile,
    actor: str,
    allowed_identifiers: Sequence[str] = (),
    eab_required: bool = False,
    validity_days: int | None = None,
    key_types: Sequence[str] = (),
    terms_of_service: str = "",
    website: str = "",
    caa_identities: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> AcmeEndpoint:
    """Create an ACME endpoint binding ``name`` to a CA and a profile, with its policy."""
    now = resolve(now)
    check_policy(profile, validity_days, key_types)
    patterns = identifier_patterns(allowed_identifiers)
    if not ENDPOINT_NAME.match(name):
        raise PolicyViolation(
            f"endpoint name {name!r}: 1-64 of a-z, 0-9 and -, starting with a letter or digit"
        )
    taken = AlreadyExists(f"an ACME endpoint named {name!r} exists")
    with transaction.atomic():
        if AcmeEndpoint.objects.filter(name=name).exists():
            raise taken
        try:
            with transaction.atomic():  # a concurrent create of the same name loses cleanly
                endpoint = AcmeEndpoint.objects.create(
                    name=name,
                    ca=ca,
                    profile=profile,
                    allowed_identifiers=patterns,
                    eab_required=eab_required,
                    validity_days=validity_days,
                    key_types=list(key_types),
                    terms_of_service=terms_of_service,
                    website=website,
                    caa_identities=list(caa_identities),
                    created_at=now,
                )
        except IntegrityError:
            raise taken from None
        audit.record(
            action="acme.endpoint.created",
            actor=actor,
            obj=endpoint,
            details={
                "name": name,
                "ca": ca.name,
                "profile": profile.name,
                "allowed_identifiers": patterns,
                "eab_required": eab_required,
            },
            scope=f"acme:{endpoint.pk}",
            now=now,
        )
    return endpoint


def create_eab_key(
    *, endpoint: AcmeEndpoint, actor: str, user: User | None = None, now: dt.datetime | None = None
) -> tuple[AcmeExternalAccountKey, str]:
    """Mint an external account key; return the row and the base64url HMAC key (shown once)."""
    now = resolve(now)
    secret = secrets.token_bytes(EAB_KEY_BYTES)
    key_id = f"kmi-{secrets.token_urlsafe(12)}"
    # Sealed under the KEK like every other secret KMI reads back; shown in clear only here.
    kek_id, sealed = seal_secret(purpose=EAB_SEAL_PURPOSE, name=key_id, plaintext=secret)
    with transaction.atomic():
        row = AcmeExternalAccountKey.objects.create(
            endpoint=endpoint,
            key_id=key_id,
            sealed_hmac_key=sealed,
            kek_id=kek_id,
            user=user,
            created_by=actor,
            created_at=now,
        )
        audit.record(
            action="acme.eab_key.created",
            actor=actor,
            obj=row,
            details={
                "endpoint": endpoint.name,
                "key_id": row.key_id,
                "user": user.username if user else None,
            },
            scope=f"acme:{endpoint.pk}",
            now=now,
        )
    return row, b64u_encode(secret)


# What ``update_endpoint`` may change: the endpoint's policy (its name, CA and profile stay).
POLICY_FIELDS = frozenset(
    {
        "allowed_identifiers",
        "eab_required",
        "validity_days",
        "key_types",
        "terms_of_service",
        "website",
        "caa_identities",
    }
)


def update_endpoint(
    *, endpoint: AcmeEndpoint, changes: Mapping[str, Any], actor: str, now: dt.datetime | None = None
) -> AcmeEndpoint:
    """Change an endpoint's policy (the fields in ``POLICY_FIELDS``); audited with before and after."""
    now = resolve(now)
    unknown = set(changes) - POLICY_FIELDS
    if unknown:
        raise PolicyViolation(f"not an endpoint policy field: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        row = (
            AcmeEndpoint.objects.select_for_update(of=("self",)).select_related("profile").get(pk=endpoint.pk)
        )
        values = {f: getattr(row, f) for f in POLICY_FIELDS}
        values.update(changes)
        if "allowed_identifiers" in changes:
            values["allowed_identifiers"] = identifier_patterns(changes["allowed_identifiers"])
        values["key_types"] = list(values["key_types"])
        values["caa_identities"] = list(values["caa_identities"])
        check_policy(row.profile, values["validity_days"], values["key_types"])
        before = {f: getattr(row, f) for f in POLICY_FIELDS if getattr(row, f) != values[f]}
        after = {f: values[f] for f in before}
        for field, value in after.items():
            setattr(row, field, value)
        if after:
            row.save(update_fields=sorted(after))
            audit.record(
                action="acme.endpoint.updated",
                actor=actor,
                obj=row,
                details={"name": row.name, "before": before, "after": after},
                scope=f"acme:{row.pk}",
                now=now,
            )
    return row


def set_endpoint_enabled(
    *, endpoint: AcmeEndpoint, enabled: bool, actor: str, now: dt.datetime | None = None
) -> AcmeEndpoint:
    """Disable an endpoint (its directory and every resource under it answer 404) or enable it again."""
    now = resolve(now)
    with transaction.atomic():
        row = AcmeEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if row.enabled != enabled:
            row.enabled = enabled
            row.save(update_fields=["enabled"])
            audit.record(
                action="acme.endpoint.enabled" if enabled else "acme.endpoint.disabled",
                actor=actor,
                obj=row,
                details={"name": row.name},
                scope=f"acme:{row.pk}",
                now=now,
            )
    return row


def revoke_eab_key(*, key: AcmeExternalAccountKey, actor: str, now: dt.datetime | None = None) -> None:
    """Delete an EAB key no account has used yet (a bound key belongs to its account); audited."""
    now = resolve(now)
    with transaction.atomic():
        # The same row lock newAccount takes before binding it: a key is bound or revoked, never both.
        row = (
            AcmeExternalAccountKey.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .get(pk=key.pk)
        )
        if row.bound_at is not None:
            raise InvalidState(
                f"external account key {row.key_id} is bound to an account; deactivate the account instead"
            )
        audit.record(
            action="acme.eab_key.revoked",
            actor=actor,
            obj=row,
            details={"endpoint": row.endpoint.name, "key_id": row.key_id},
            scope=f"acme:{row.endpoint_id}",
            now=now,
        )
        row.delete()


def parse_identifier(raw: object) -> SAN:
    """Parse an RFC 8555 identifier object (``dns`` or RFC 8738 ``ip``) into a SAN."""
    if not isinstance(raw, dict) or set(raw) != {"type", "value"} or not isinstance(raw["value"], str):
        raise Malformed("an identifier is an object with exactly a type and a value")
    kind, value = raw["type"], raw["value"]
    if kind == "dns":
        try:
            return SAN("dns", validate_dns_name(value))
        except NameNotAllowed as exc:
            raise RejectedIdentifier(str(exc)) from None
    if kind == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise Malformed(f"{value!r} is not an IP address") from None
        if str(address) != value:
            raise Malformed(f"IP identifier {value!r} must be in canonical form ({address})")
        return SAN("ip", value)
    raise UnsupportedIdentifier(f"identifier type {kind!r} is not supported (use dns or ip)")


def check_identifier_allowed(endpoint: AcmeEndpoint, san: SAN) -> None:
    """The endpoint's patterns, the profile's names and the CA's name constraints must allow ``san``."""
    if not any(name_matches(san, p) for p in endpoint.allowed_identifiers):
        raise RejectedIdentifier(f"{san} is not allowed by ACME endpoint {endpoint.name}")
    policy = endpoint.profile.policy()
    if not any(name_matches(san, p) for p in policy.allowed_names):
        raise RejectedIdentifier(f"{san} is not allowed by profile {policy.name}")
    try:
        NameConstraints.from_json(endpoint.ca.name_constraints).check_sans([san])
    except PolicyViolation as exc:
        raise RejectedIdentifier(str(exc)) from None
