"""API tokens: stored hashed, shown once, expiring and revocable; the command and the endpoints."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from pki.models import ApiToken, AuditEvent
from pki.tokens import authenticate, create_token, revoke_token
from web.api import throttles

pytestmark = pytest.mark.django_db


def _client(text):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
    return c


def test_create_token_command_prints_the_token_once_and_stores_only_its_digest(admin):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_token", "alice", "--expires-days", "7", stdout=out, stderr=err)
    text = out.getvalue().strip()
    assert text.startswith("kmi_")
    token = ApiToken.objects.get(prefix=text.split("_")[1])
    assert text not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    secret = text.split("_", 2)[2]
    assert secret not in token.digest
    assert token.expires_at is not None
    assert "not shown again" in err.getvalue()
    assert _client(text).get("/api/v1/cas/").status_code == 200
    assert AuditEvent.objects.filter(action="token.created", object_id=str(token.pk)).exists()


def test_create_token_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user named"):
        call_command("create_token", "nobody", stdout=io.StringIO())


def test_digest_is_sha256_of_the_secret(admin):
    issued = create_token(user=admin.user, actor="test")
    import base64

    encoded = issued.text.split("_", 2)[2]
    secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    assert len(secret) == 32
    assert issued.token.digest == hashlib.sha256(secret).hexdigest()


def test_expired_revoked_and_tampered_tokens_are_refused(admin):
    now = dt.datetime.now(tz=dt.UTC)
    issued = create_token(user=admin.user, actor="test", expires_at=now + dt.timedelta(days=1), now=now)
    assert authenticate(issued.text, now=now) is not None
    assert authenticate(issued.text, now=now + dt.timedelta(days=2)) is None
    assert authenticate(issued.text[:-2] + "xx", now=now) is None
    assert authenticate("kmi_nothing", now=now) is None
    assert authenticate("Basic abc", now=now) is None
    with time_machine.travel(now + dt.timedelta(days=2), tick=False):
        response = _client(issued.text).get("/api/v1/cas/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    revoke_token(token=issued.token, actor="test")
    assert _client(issued.text).get("/api/v1/cas/").status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1


def test_inactive_user_token_is_refused(admin):
    User.objects.filter(pk=admin.user.pk).update(is_active=False)
    assert admin.client.get("/api/v1/cas/").status_code == 401


def test_users_manage_their_own_tokens_through_the_api(requester, admin):
    created = requester.client.post(
        "/api/v1/tokens/", {"name": "laptop", "expires_in_days": 30}, format="json"
    )
    assert created.status_code == 201
    text = created.json()["token"]
    assert created["Cache-Control"] == "no-store"
    token_id = created.json()["id"]
    mine = requester.client.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in mine} == {"", "laptop"}
    assert all("token" not in t for t in mine)
    # Other users' tokens are invisible to a requester, visible to an administrator.
    assert requester.client.delete(f"/api/v1/tokens/{admin.user.kmi_tokens.get().pk}/").status_code == 404
    assert len(admin.client.get("/api/v1/tokens/").json()["results"]) == 3
    assert requester.client.delete(f"/api/v1/tokens/{token_id}/").status_code == 204
    assert _client(text).get("/api/v1/cas/").status_code == 401


def test_session_login_works_for_the_browser(requester, client):
    requester.user.set_password("a-long-password-42")
    requester.user.save()
    assert client.login(username="rita", password="a-long-password-42")
    assert client.get("/api/v1/cas/").status_code == 200


def test_token_and_enroll_endpoints_are_throttled(requester, settings, one_throttle_window):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"enroll": "2/minute", "token": "1/minute"},
    }
    try:
        assert requester.client.post("/api/v1/tokens/", {}, format="json").status_code == 201
        throttled = requester.client.post("/api/v1/tokens/", {}, format="json")
        assert throttled.status_code == 429
        assert 1 <= int(throttled["Retry-After"]) <= 61
        assert throttled["Content-Type"] == "application/problem+json"
        for _ in range(2):
            requester.client.post("/api/v1/enroll", {}, format="json")
        assert requester.client.post("/api/v1/enroll", {}, format="json").status_code == 429
        # Reading is never throttled.
        assert requester.client.get("/api/v1/tokens/").status_code == 200
    finally:
        throttles.forget(requester.user.pk)


def test_a_bad_rate_setting_fails_loudly():
    with pytest.raises(ImproperlyConfigured):
        throttles.parse_rate("lots")
    assert throttles.parse_rate("600/minute") == (600, 60)
