"""The window throttle: exact below LEASE_DIVISOR requests a window, never above the limit."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from web.api import throttles

SCOPE = "enroll"
IDENT = "throttle-test"


# One window for a whole test (the real clock could cross a minute boundary mid-test).
WINDOW = int(time.time() // 60)


@pytest.fixture
def clean():
    keys = [f"throttle_{SCOPE}_{IDENT}_{w}" for w in (WINDOW, WINDOW + 1)]
    throttles.forget(IDENT)
    cache.delete_many(keys)
    yield
    throttles.forget(IDENT)
    cache.delete_many(keys)


def _admit(limit: int) -> bool:
    return throttles._admit(SCOPE, IDENT, limit, 60, WINDOW)


def _shared_count() -> int:
    return int(cache.get(f"throttle_{SCOPE}_{IDENT}_{WINDOW}") or 0)


def test_small_limits_count_every_request_in_the_shared_counter(clean):
    assert [_admit(3) for _ in range(5)] == [True, True, True, False, False]
    assert _shared_count() == 5


def test_a_process_spends_its_block_without_asking_redis_again(clean):
    limit = 1000  # blocks of 5
    assert _admit(limit)
    assert _shared_count() == 5
    assert all(_admit(limit) for _ in range(4))
    assert _shared_count() == 5
    assert _admit(limit)
    assert _shared_count() == 10


def test_processes_sharing_a_user_never_let_more_than_the_limit_through(clean, monkeypatch):
    limit = 1000
    first = {}  # one process's leases
    monkeypatch.setattr(throttles, "_leases", first)
    admitted = int(_admit(limit))  # takes a block of 5, spends 1
    second: dict = {}
    monkeypatch.setattr(throttles, "_leases", second)  # another process
    while _admit(limit):
        admitted += 1
    assert admitted == limit - 4  # the first process still holds 4
    monkeypatch.setattr(throttles, "_leases", first)
    while _admit(limit):
        admitted += 1
    assert admitted == limit
    assert not _admit(limit)


def test_a_new_window_starts_a_new_allowance(clean):
    assert throttles._admit(SCOPE, IDENT, 1, 60, WINDOW)
    assert not throttles._admit(SCOPE, IDENT, 1, 60, WINDOW)
    assert throttles._admit(SCOPE, IDENT, 1, 60, WINDOW + 1)
