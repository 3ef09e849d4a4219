"""Replay-Nonce stores: Redis (SET NX EX / GETDEL) and the database."""

from __future__ import annotations

import datetime as dt

import pytest

from pki.acme.nonces import consume_nonce, new_nonce, purge_expired_nonces
from pki.models import AcmeNonce

pytestmark = pytest.mark.django_db


def test_redis_nonce_is_single_use(settings):
    assert settings.REDIS_URL
    nonce = new_nonce()
    assert consume_nonce(nonce)
    assert not consume_nonce(nonce)
    assert not consume_nonce("never-issued")
    assert not consume_nonce("")
    assert not AcmeNonce.objects.exists()


def test_database_nonce_is_single_use_and_expires(settings):
    settings.REDIS_URL = ""
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    nonce = new_nonce(now=now)
    assert AcmeNonce.objects.filter(value=nonce).exists()
    assert consume_nonce(nonce, now=now)
    assert not consume_nonce(nonce, now=now)
    stale = new_nonce(now=now)
    later = now + dt.timedelta(hours=2)
    assert not consume_nonce(stale, now=later)
    assert purge_expired_nonces(now=later) == 1
    assert not AcmeNonce.objects.exists()
