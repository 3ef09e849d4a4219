"""ACME endpoint administration: create an endpoint with its policy, mint EAB keys, check identifiers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import NameNotAllowed, PolicyViolation
from pki.models.acme import AcmeEndpoint, AcmeExternalAccountKey
from pki.models.authority import CertificateAuthority
from pki.models.profile import Profile
from pki.profiles import KEY_FAMILIES, name_matches, validate_name_pattern
from pki.x509.constraints import NameConstraints
from pki.x509.names import SAN, validate_dns_name

from .exceptions import Malformed, RejectedIdentifier, UnsupportedIdentifier
from .jws import b64u_encode

EAB_KEY_BYTES = 32  # an HS256 key as long as its output


def _pattern(text: str) -> str:
    """Accept ``*.example.test`` or ``10.0.0.0/8`` as shorthand for ``dns:…`` / ``ip:…``."""
    if ":" in text and text.split(":", 1)[0] in {"dns", "ip", "email", "uri"}:
        return validate_name_pattern(text)
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return validate_name_pattern(f"dns:{text.lower()}")
    return validate_name_pattern(f"ip:{text}")


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
    policy = profile.policy()
    if policy.is_ca or policy.requires_approval:
        raise PolicyViolation(f"profile {profile.name} needs an operator; ACME issues without one")
    if validity_days is not None:
        policy.validity_for(validity_days)
    for kt in key_types:
        if kt not in KEY_FAMILIES:
            raise PolicyViolation(f"unknown key type {kt!r}")
    patterns = [_pattern(p) for p in allowed_identifiers]
    for p in patterns:
        if not p.startswith(("dns:", "ip:")):
            raise PolicyViolation(f"ACME identifiers are dns or ip names, not {p!r}")
    with transaction.atomic():
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
    with transaction.atomic():
        row = AcmeExternalAccountKey.objects.create(
            endpoint=endpoint,
            key_id=f"kmi-{secrets.token_urlsafe(12)}",
            hmac_key=secret,
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
