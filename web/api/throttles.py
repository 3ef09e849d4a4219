"""Throttles for enrollment and token endpoints: per-user fixed windows counted in the cache.

DRF's SimpleRateThrottle keeps every request's timestamp in one cached list, so at thousands of
requests a minute each request unpickles and re-pickles thousands of floats. A counter per
window costs the same at any rate (Redis INCRBY when REDIS_URL is set), and each process takes
its users' allowance in blocks, so most requests do not wait on Redis at all (``_admit``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from pki import settings_registry

log = logging.getLogger(__name__)


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/minute"`` -> (600, 60), as KMI_API_*_RATE are checked at start-up."""
    try:
        return settings_registry.parse_rate(rate)
    except settings_registry.Invalid as exc:
        raise ImproperlyConfigured(f"throttle rate {rate!r} {exc}") from None


_redis_client: list[Any] = []


def _redis_count(key: str, period: int, amount: int) -> int | None:
    """Add ``amount`` in Redis with one round trip (SET NX with expiry, INCRBY) and return the
    total; None for other caches.

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
    pipe.incrby(full_key, amount)
    return int(pipe.execute()[1])


def _count(key: str, period: int, amount: int = 1) -> int:
    count = _redis_count(key, period, amount)
    if count is not None:
        return count
    try:
        return int(cache.incr(key, amount))
    except ValueError:  # first request of the window
        return amount if cache.add(key, amount, timeout=period + 1) else int(cache.incr(key, amount))


# A process takes a user's allowance from the shared counter in blocks (INCRBY n) and spends it
# locally, so only one request in n waits on Redis. The shared counter still never lets more than
# the limit through: a block is spent only up to what was within the limit when it was taken.
# Blocks left unspent when a window closes make other processes refuse early, by at most
# (processes x (n - 1)) requests a window; n is limit // LEASE_DIVISOR (1, i.e. exact counting,
# below that many requests a window), at most MAX_LEASE.
LEASE_DIVISOR = 200
MAX_LEASE = 50
_leases: dict[tuple[str, object], tuple[int, int]] = {}  # (scope, ident) -> (window, requests left)
_leases_lock = threading.Lock()


def _admit(scope: str, ident: object, limit: int, period: int, window: int) -> bool:
    """Spend one request of ``ident``'s allowance in this window (taking a block when none is left)."""
    with _leases_lock:
        window_held, left = _leases.get((scope, ident), (window, 0))
        if window_held == window and left > 0:
            _leases[(scope, ident)] = (window, left - 1)
            return True
    size = max(1, min(MAX_LEASE, limit // LEASE_DIVISOR))
    total = _count(f"throttle_{scope}_{ident}_{window}", period, size)
    granted = max(0, min(size, limit - (total - size)))
    if granted:
        with _leases_lock:
            _leases[(scope, ident)] = (window, granted - 1)
    return granted > 0


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
        """Count ``request`` for ``ident`` (once: the decision web/api/fast_enroll.py took for it
        before handing it to the DRF view is reused) and say whether it is within the limit."""
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        rate = rates.get(self.scope)
        if rate is None:
            return True
        limit, period = parse_rate(str(rate))
        now = time.time()
        window = int(now // period)
        decided = f"kmi.throttle.{self.scope}"
        allowed = request.META.get(decided)
        if allowed is None:
            try:
                allowed = _admit(self.scope, ident, limit, period, window)
            except Exception as exc:  # noqa: BLE001 - redis-py raises many types when Redis is down
                # A throttle that cannot count lets the call through: the call itself then says
                # what is wrong (e.g. 503 when it needs a signing worker), rather than a 500 here.
                log.warning(
                    "throttle %s cannot count (%s: %s); allowing", self.scope, type(exc).__name__, exc
                )
                allowed = True
            request.META[decided] = allowed
        if not allowed:
            self.wait_seconds = (window + 1) * period - now
        return bool(allowed)

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
        with _leases_lock:
            _leases.pop((scope, ident), None)
    cache.delete_many(keys)
