"""Throttles for enrollment and token endpoints: per-user fixed windows counted in the cache.

DRF's SimpleRateThrottle keeps every request's timestamp in one cached list, so at thousands of
requests a minute each request unpickles and re-pickles thousands of floats. A counter per
window costs the same at any rate (Redis INCR when REDIS_URL is set).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/minute"`` -> (600, 60)."""
    try:
        count, period = rate.split("/")
        return int(count), PERIODS[period.strip()[0].lower()]
    except (ValueError, KeyError, IndexError):
        raise ImproperlyConfigured(f"throttle rate {rate!r} must look like 600/minute") from None


_redis_client: list[Any] = []


def _redis_count(key: str, period: int) -> int | None:
    """Count in Redis with one round trip (SET NX with expiry, INCR); None for other caches.

    Django's RedisCache builds a new client object (and its table of reply callbacks) on every
    call, and counting with it takes one or two round trips: this keeps one client per process.
    """
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    if not _redis_client:
        _redis_client.append(backend._cache.get_client(write=True))
    full_key = backend.make_and_validate_key(key)
    pipe = _redis_client[0].pipeline(transaction=False)
    pipe.set(full_key, 0, ex=period + 1, nx=True)
    pipe.incr(full_key)
    return int(pipe.execute()[1])


def _count(key: str, period: int) -> int:
    count = _redis_count(key, period)
    if count is not None:
        return count
    try:
        return int(cache.incr(key))
    except ValueError:  # first request of the window
        return 1 if cache.add(key, 1, timeout=period + 1) else int(cache.incr(key))


class WindowThrottle(BaseThrottle):
    """At most N requests per user per window; the scope names the rate in DEFAULT_THROTTLE_RATES."""

    scope = ""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        """Count this request in the current window; refuse it past the limit."""
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.consume(request, ident)

    def consume(self, request: Request | HttpRequest, ident: object) -> bool:
        """Count ``request`` for ``ident`` (once: a count web/api/fast_enroll.py took for it before
        handing it to the DRF view is reused) and say whether it is within the limit."""
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        rate = rates.get(self.scope)
        if rate is None:
            return True
        limit, period = parse_rate(str(rate))
        now = time.time()
        window = int(now // period)
        counted = f"kmi.throttle.{self.scope}"
        count = request.META.get(counted)
        if count is None:
            try:
                count = _count(f"throttle_{self.scope}_{ident}_{window}", period)
            except Exception as exc:  # noqa: BLE001 - redis-py raises many types when Redis is down
                # A throttle that cannot count lets the call through: the call itself then says
                # what is wrong (e.g. 503 when it needs a signing worker), rather than a 500 here.
                log.warning(
                    "throttle %s cannot count (%s: %s); allowing", self.scope, type(exc).__name__, exc
                )
                count = 0
            request.META[counted] = count
        if count <= limit:
            return True
        self.wait_seconds = (window + 1) * period - now
        return False

    def wait(self) -> float | None:
        """Seconds until the next window opens."""
        return self.wait_seconds


class EnrollThrottle(WindowThrottle):
    """Enrollment, request submission and server-generated keys, per user."""

    scope = "enroll"


class TokenThrottle(WindowThrottle):
    """Creating and revoking API tokens, per user."""

    scope = "token"


def forget(ident: object, scopes: tuple[str, ...] = ("enroll", "token")) -> None:
    """Delete ``ident``'s counters of the current and previous windows (tests clean up with it)."""
    rates = api_settings.DEFAULT_THROTTLE_RATES or {}
    keys = []
    for scope in scopes:
        if scope in rates:
            period = parse_rate(str(rates[scope]))[1]
            window = int(time.time() // period)
            keys += [f"throttle_{scope}_{ident}_{w}" for w in (window - 1, window)]
    cache.delete_many(keys)
