"""Redis for the domain's stores (ACME nonces, pre-signed OCSP responses): one client per URL and
process, always with connect and socket timeouts, and a pause after a failure.

A Redis that accepts connections and never answers (``kill -STOP``) must cost a request at most
``KMI_REDIS_TIMEOUT`` seconds, once: after a failure the store leaves Redis alone for
``RETRY_SECONDS`` and answers from the database meanwhile.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


def timeout_seconds() -> float:
    """Connect and socket timeout of every Redis client KMI makes (``KMI_REDIS_TIMEOUT``)."""
    return float(getattr(settings, "KMI_REDIS_TIMEOUT", DEFAULT_TIMEOUT))


@functools.cache
def _client(url: str, timeout: float) -> redis.Redis:
    import redis as redis_lib

    return redis_lib.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def client(url: str, *, timeout: float | None = None) -> redis.Redis:
    """The shared Redis client of ``url`` in this process, with connect and socket timeouts."""
    return _client(url, timeout_seconds() if timeout is None else timeout)


class Breaker:
    """Remembers that Redis failed, so callers skip it for ``retry_seconds`` instead of waiting."""

    def __init__(self, name: str, retry_seconds: float = 5.0) -> None:
        self.name = name
        self.retry_seconds = retry_seconds
        self._down_until = 0.0

    @property
    def open(self) -> bool:
        """True while Redis is presumed down."""
        return time.monotonic() < self._down_until

    def failed(self, what: str, exc: BaseException) -> None:
        """Record a failure: skip Redis for a while, and log it once per pause (no traceback)."""
        self._down_until = time.monotonic() + self.retry_seconds
        log.warning(
            "%s: Redis %s failed (%s: %s); using the database for %gs",
            self.name,
            what,
            type(exc).__name__,
            exc,
            self.retry_seconds,
        )

    def reset(self) -> None:
        """Forget a failure (tests)."""
        self._down_until = 0.0
