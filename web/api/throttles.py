"""Throttles for enrollment and token endpoints (DRF, cache-backed: Redis in production)."""

from __future__ import annotations

from rest_framework.throttling import UserRateThrottle


class EnrollThrottle(UserRateThrottle):
    """Enrollment, request submission and server-generated keys, per user."""

    scope = "enroll"


class TokenThrottle(UserRateThrottle):
    """Creating and revoking API tokens, per user."""

    scope = "token"
