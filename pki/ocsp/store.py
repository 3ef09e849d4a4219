"""Pre-signed responses: Redis (when configured) in front of the ``OCSPResponse`` table."""

from __future__ import annotations

import datetime as dt
import logging
import struct
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from pki.conf import ocsp_settings
from pki.models.ocsp import OCSPResponse
from pki.ocsp.responses import SignedResponse

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

PRESIGNED_HASHES = ("sha1", "sha256")  # RFC 5019 §2.1.1 clients send SHA-1; newer ones SHA-256
REDIS_RETRY_SECONDS = 5.0  # after a Redis error, the database answers alone this long
_STORE_HEADER = struct.Struct(">qq")  # thisUpdate, nextUpdate (Unix seconds) before the DER


class ResponseStore:
    """Pre-signed responses: Redis (when configured) in front of the ``OCSPResponse`` table."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._client_url = ""
        self._down_until = 0.0

    def reset(self) -> None:
        """Forget the Redis client and any outage (tests, settings changes)."""
        self._client = None
        self._down_until = 0.0

    def _failed(self, what: str) -> None:
        # After a failure, leave Redis alone for a few seconds: no timeout and no traceback per
        # request while it is down; the database answers meanwhile.
        self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning(
            "OCSP: Redis %s failed; using the database for %ss", what, REDIS_RETRY_SECONDS, exc_info=True
        )

    def client(self) -> redis.Redis | None:
        """The Redis client of this process, or None without ``REDIS_URL`` (or while it is down)."""
        conf = ocsp_settings()
        if not conf.redis_url or time.monotonic() < self._down_until:
            return None
        if self._client is None or self._client_url != conf.redis_url:
            import redis as redis_lib

            self._client = redis_lib.Redis.from_url(
                conf.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._client_url = conf.redis_url
        return self._client

    @staticmethod
    def key(ca_id: int, serial: str, algorithm: str) -> str:
        """The Redis key of a response: prefix, CA, serial and CertID hash algorithm."""
        return f"{ocsp_settings().redis_prefix}:{ca_id}:{serial}:{algorithm}"

    def get_cached(self, ca_id: int, serial: str, algorithm: str) -> SignedResponse | None:
        """The response from Redis, or None (a miss, no Redis, or Redis down)."""
        client = self.client()
        if client is None:
            return None
        try:
            raw = client.get(self.key(ca_id, serial, algorithm))
        except (RedisError, OSError):  # a Redis outage must fall back to the database, never fail
            self._failed("GET")
            return None
        if not isinstance(raw, bytes) or len(raw) <= _STORE_HEADER.size:
            return None
        this_update, next_update = _STORE_HEADER.unpack_from(raw)
        return SignedResponse(
            der=raw[_STORE_HEADER.size :],
            this_update=dt.datetime.fromtimestamp(this_update, dt.UTC),
            next_update=dt.datetime.fromtimestamp(next_update, dt.UTC),
        )

    def get_stored(self, ca_id: int, serial: str, algorithm: str, now: dt.datetime) -> SignedResponse | None:
        """The durable copy from the database (and put it back into Redis), or None."""
        row = (
            OCSPResponse.objects.current(now)
            .filter(ca_id=ca_id, serial=serial, hash_algorithm=algorithm)
            .values_list("der", "this_update", "next_update")
            .first()
        )
        if row is None:
            return None
        found = SignedResponse(der=bytes(row[0]), this_update=row[1], next_update=row[2])
        # NX: a re-signed response written meanwhile by a worker always wins over this copy.
        self._put_redis([(ca_id, serial, algorithm, found)], now=now, only_new=True)
        return found

    def _put_redis(
        self,
        items: Iterable[tuple[int, str, str, SignedResponse]],
        *,
        now: dt.datetime,
        only_new: bool = False,
    ) -> None:
        client = self.client()
        if client is None:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                for ca_id, serial, algorithm, resp in items:
                    ttl = int((resp.next_update - now).total_seconds())
                    if ttl <= 0:
                        continue
                    header = _STORE_HEADER.pack(
                        int(resp.this_update.timestamp()), int(resp.next_update.timestamp())
                    )
                    pipe.set(self.key(ca_id, serial, algorithm), header + resp.der, ex=ttl, nx=only_new)
                pipe.execute()
        except (RedisError, OSError):  # the database copy is durable; Redis is a cache in front
            self._failed("SET")

    def put(
        self, ca_id: int, rows: Sequence[tuple[int, str, str, str, SignedResponse]], *, now: dt.datetime
    ) -> None:
        """Store (certificate id, serial, algorithm, revocation reason, response) rows: database
        first, then Redis."""
        OCSPResponse.objects.bulk_create(
            [
                OCSPResponse(
                    ca_id=ca_id,
                    certificate_id=cert_pk,
                    serial=serial,
                    hash_algorithm=algorithm,
                    revocation_reason=reason,
                    der=resp.der,
                    produced_at=resp.this_update,
                    this_update=resp.this_update,
                    next_update=resp.next_update,
                )
                for cert_pk, serial, algorithm, reason, resp in rows
            ],
            update_conflicts=True,
            unique_fields=["ca", "serial", "hash_algorithm"],
            update_fields=[
                "certificate",
                "revocation_reason",
                "der",
                "produced_at",
                "this_update",
                "next_update",
            ],
        )
        self._put_redis(((ca_id, s, a, r) for _, s, a, _, r in rows), now=now)

    def delete(self, keys: Iterable[tuple[int, str, str]]) -> None:
        """Remove responses from Redis (the database rows are deleted by the caller)."""
        client = self.client()
        names = [self.key(*k) for k in keys]
        if client is None or not names:
            return
        try:
            client.delete(*names)
        except (RedisError, OSError):  # expired keys also leave Redis by their TTL
            self._failed("DELETE")


STORE = ResponseStore()
