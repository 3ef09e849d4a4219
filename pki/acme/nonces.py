"""Replay-Nonce store (RFC 8555 §6.5) shared by every web process: Redis when ``REDIS_URL`` is set
(``SET NX EX`` to issue, ``GETDEL`` to consume), the database otherwise."""

from __future__ import annotations

import datetime as dt
import functools
import secrets

from django.conf import settings

from pki.acme.conf import acme_settings
from pki.clock import resolve
from pki.models.acme import AcmeNonce


@functools.cache
def _redis(url: str) -> object:
    import redis

    return redis.Redis.from_url(url)


def _client() -> object | None:
    url = getattr(settings, "REDIS_URL", "")
    return _redis(url) if url else None


def new_nonce(*, now: dt.datetime | None = None) -> str:
    """Issue a fresh single-use nonce (128 random bits, base64url)."""
    value = secrets.token_urlsafe(16)
    conf = acme_settings()
    client = _client()
    if client is not None:
        client.set(conf.nonce_prefix + value, b"1", nx=True, ex=conf.nonce_ttl)  # type: ignore[attr-defined]
    else:
        AcmeNonce.objects.create(value=value, expires_at=resolve(now) + dt.timedelta(seconds=conf.nonce_ttl))
    return value


def consume_nonce(value: str, *, now: dt.datetime | None = None) -> bool:
    """Use up ``value``; True only the first time, and only while it has not expired."""
    if not value or len(value) > 64:
        return False
    client = _client()
    if client is not None:
        return client.getdel(acme_settings().nonce_prefix + value) is not None  # type: ignore[attr-defined]
    deleted, _ = AcmeNonce.objects.filter(value=value, expires_at__gt=resolve(now)).delete()
    return deleted == 1


def purge_expired_nonces(*, now: dt.datetime | None = None) -> int:
    """Delete expired database nonces (Redis expires its own); return how many went."""
    deleted, _ = AcmeNonce.objects.filter(expires_at__lte=resolve(now)).delete()
    return deleted
