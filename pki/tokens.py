"""Per-user API tokens: created and revoked through audited use cases, stored only as a digest.

A token reads ``kmi_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the 32-byte
secret is compared in constant time. The full token is returned once, at creation.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, models, transaction

from pki import audit
from pki.access import remember_grants
from pki.clock import resolve
from pki.exceptions import InvalidState, PolicyViolation
from pki.models.access import ApiToken
from pki.recording import execute_prepared

TOKEN_PREFIX = "kmi_"  # noqa: S105 - the public marker of a KMI token, not a secret
SECRET_BYTES = 32
PREFIX_BYTES = 6  # 12 hex characters: a lookup id, not a secret


def _digest(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class IssuedToken:
    """A new token row and the token text, which is shown once and never stored."""

    token: ApiToken
    text: str


def create_token(
    *,
    user: User,
    actor: str,
    name: str = "",
    expires_at: dt.datetime | None = None,
    parent: ApiToken | None = None,
    now: dt.datetime | None = None,
) -> IssuedToken:
    """Create an API token for ``user``; the returned text is the only copy of the secret.

    ``parent``: the token the request creating this one came with. A token acts only for its
    own user (a token for someone else would carry their rights), and the new one never
    outlives it: without an expiry it expires with its parent.
    """
    now = resolve(now)
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise PolicyViolation("a token's expiry must be an aware time in the future")
    if parent is not None:
        if parent.user_id != user.pk:
            raise PolicyViolation("a token creates tokens only for its own user (sign in to act for others)")
        if parent.expires_at is not None:
            if expires_at is None:
                expires_at = parent.expires_at
            elif expires_at > parent.expires_at:
                raise PolicyViolation(
                    f"a token made with token {parent.prefix} cannot outlive it "
                    f"(it expires {parent.expires_at.isoformat()})"
                )
    if not user.is_active:
        raise InvalidState(f"user {user.get_username()} is inactive")
    secret = secrets.token_bytes(SECRET_BYTES)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secrets.token_hex(PREFIX_BYTES),
            digest=_digest(secret),
            created_by=actor,
            created_at=now,
            expires_at=expires_at,
        )
        audit.record(
            action="token.created",
            actor=actor,
            obj=token,
            details={
                "user": user.get_username(),
                "name": name,
                "prefix": token.prefix,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "parent": parent.prefix if parent is not None else None,
            },
            now=now,
        )
    return IssuedToken(token=token, text=f"{TOKEN_PREFIX}{token.prefix}_{_b64(secret)}")


def revoke_token(*, token: ApiToken, actor: str, now: dt.datetime | None = None) -> ApiToken:
    """Revoke a token (idempotent); audited."""
    now = resolve(now)
    with transaction.atomic():
        row = ApiToken.objects.select_for_update().get(pk=token.pk)
        if row.revoked_at is not None:
            return row
        row.revoked_at = now
        row.revoked_by = actor
        row.save(update_fields=["revoked_at", "revoked_by"])
        audit.record(
            action="token.revoked",
            actor=actor,
            obj=row,
            details={"user_id": row.user_id, "prefix": row.prefix},
            now=now,
        )
    return row


def _parse(text: str) -> tuple[str, bytes] | None:
    """Split ``kmi_<prefix>_<secret>`` into the prefix and the secret bytes."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    # The prefix is hex (no '_'); the secret after the first '_' is base64url and may hold '_'.
    prefix, sep, encoded = text[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not prefix or len(prefix) > 16 or not encoded:
        return None
    try:
        return prefix, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None


def authenticate(text: str, *, now: dt.datetime | None = None) -> ApiToken | None:
    """Return the live token (with its user loaded) that ``text`` is, or None."""
    return authenticate_and_read(text, now=now)[0]


def authenticate_and_read(
    text: str, *, columns: str = "", params: Sequence[Any] = (), now: dt.datetime | None = None
) -> tuple[ApiToken | None, tuple[Any, ...]]:
    """``authenticate``, whose one query also selects ``columns`` (scalar subqueries, their values
    bound from ``params``): what the caller needs next, in the same round trip (PostgreSQL; the
    values are () elsewhere, and when no token has the text's prefix)."""
    parsed = _parse(text)
    if parsed is None:
        return None, ()
    prefix, secret = parsed
    token, extra = _load(prefix, columns, params)
    if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
        return None, extra
    now = resolve(now)
    expired = token.expires_at is not None and token.expires_at <= now
    if token.revoked_at is not None or expired or not token.user.is_active:
        return None, extra
    return token, extra


def _columns(model: type[models.Model]) -> tuple[list[str], str]:
    fields = list(model._meta.concrete_fields)
    return [f.attname for f in fields], ", ".join(f"{{alias}}.{f.column}" for f in fields)


_TOKEN_ATTRS, _TOKEN_COLS = _columns(ApiToken)
_USER_ATTRS, _USER_COLS = _columns(User)


# Token, user and the user's role grants in one round trip (every API call pays for it); a
# caller's own columns go before FROM.
@functools.cache
def _load_sql(columns: str) -> str:
    return (
        f"SELECT {_TOKEN_COLS.format(alias='t')}, {_USER_COLS.format(alias='u')}, "  # noqa: S608
        "(SELECT coalesce(json_agg(json_build_array(g.role, g.ca_id, g.profile_id)), '[]'::json)::text "
        "FROM pki_rolegrant g WHERE g.user_id = u.id)"
        f"{', ' + columns if columns else ''} "
        f"FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id "
        "WHERE t.prefix = %s"
    )


def _load(prefix: str, columns: str, params: Sequence[Any]) -> tuple[ApiToken | None, tuple[Any, ...]]:
    """The token of ``prefix`` with its user loaded (and, on PostgreSQL, the user's grants), and
    the values of ``columns``."""
    if connection.vendor != "postgresql":
        return ApiToken.objects.select_related("user").filter(prefix=prefix).first(), ()
    row = execute_prepared(_load_sql(columns), [*params, prefix])
    if row is None:
        return None, ()
    n, m = len(_TOKEN_ATTRS), len(_TOKEN_ATTRS) + len(_USER_ATTRS)
    token = ApiToken.from_db(connection.alias, _TOKEN_ATTRS, row[:n])
    user = User.from_db(connection.alias, _USER_ATTRS, row[n:m])
    token.user = user
    remember_grants(user, [tuple(g) for g in json.loads(row[m])])
    return token, tuple(row[m + 1 :])
