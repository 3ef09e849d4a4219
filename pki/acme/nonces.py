"""Replay-Nonce store (RFC 8555 §6.5) shared by every web process: Redis when ``REDIS_URL`` is set
(``SET NX EX`` to issue, ``GETDEL`` to consume), the database otherwise.

When Redis is unreachable (down, or hung: every call has a timeout) nonces are issued from the
database, and a nonce Redis does not know is looked up there too, so ACME keeps working through
a Redis outage; a nonce issued by Redis before the outage gets ``badNonce`` and the client
retries with the fresh one that came with that answer (RFC 8555 §6.5).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from redis.exceptions import RedisError

from pki import redisclient
from pki.acme.conf import acme_settings
from pki.clock import resolve
from pki.models.acme import AcmeNonce
from pki.redisclient import Breaker

if TYPE_CHECKING:
    import redis


BREAKER = Breaker("ACME nonces")


def _client() -> redis.Redis | None:
    url = getattr(settings, "REDIS_URL", "")
    return redisclient.client(url) if url and not BREAKER.open else None


def new_nonce(*, now: dt.datetime | None = None) -> str:
    """Issue a fresh single-use nonce (128 random bits, base64url)."""
    value = secrets.token_urlsafe(16)
    conf = acme_settings()
    client = _client()
    if client is not None:
        try:
            client.set(conf.nonce_prefix + value, b"1", nx=True, ex=conf.nonce_ttl)
        except RedisError as exc:
            BREAKER.failed("SET", exc)
        else:
            return value
    AcmeNonce.objects.create(value=value, expires_at=resolve(now) + dt.timedelta(seconds=conf.nonce_ttl))
    return value


def consume_nonce(value: str, *, now: dt.datetime | None = None) -> bool:
    """Use up ``value``; True only the first time, and only while it has not expired."""
    if not value or len(value) > 64:
        return False
    client = _client()
    if client is not None:
        try:
            if client.getdel(acme_settings().nonce_prefix + value) is not None:
                return True
        except RedisError as exc:
            BREAKER.failed("GETDEL", exc)
    # Without Redis, and for nonces issued from the database while Redis was unreachable.
    deleted, _ = AcmeNonce.objects.filter(value=value, expires_at__gt=resolve(now)).delete()
    return deleted == 1


def purge_expired_nonces(*, now: dt.datetime | None = None) -> int:
    """Delete expired database nonces (Redis expires its own); return how many went."""
    deleted, _ = AcmeNonce.objects.filter(expires_at__lte=resolve(now)).delete()
    return deleted
