"""Signing in: sessions, TOTP for the roles that need it, throttling, CSP, cookies."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from pki.access import grant_role
from pki.models import AuditEvent, Role
from tests.web.console.conftest import PASSWORD, code_for, sign_in

pytestmark = pytest.mark.django_db


def test_anonymous_visit_redirects_to_the_login_form():
    response = Client().get("/console/certificates/?q=www")
    assert response.status_code == 302
    assert response["Location"] == "/console/login/?next=/console/certificates/?q=www"
    page = Client().get("/console/login/").content.decode()
    assert 'name="username"' in page
    assert 'name="password"' in page


def test_requester_signs_in_with_a_password_alone_and_it_is_audited(c_requester):
    assert c_requester.client.get("/console/").status_code == 200
    event = AuditEvent.objects.filter(action="user.signed_in").get()
    assert event.actor == "rita"
    assert event.details["second_factor"] == "none"


def test_operator_enrols_totp_at_first_sign_in_then_needs_the_code(issuing_ca):
    user = User.objects.create_user("oscar", password=PASSWORD)
    grant_role(user=user, role=Role.CA_OPERATOR, ca=issuing_ca, actor="t")
    client = Client()
    response = client.post("/console/login/", {"username": "oscar", "password": PASSWORD})
    assert response["Location"].startswith("/console/login/totp/setup/")
    # Not signed in yet: neither the console nor the API (session) lets the user in.
    assert client.get("/console/").status_code == 302
    assert client.get("/api/v1/cas/").status_code in (401, 403)
    page = client.get(response["Location"]).content.decode()
    assert "<svg" in page
    assert 'data-testid="totp-secret"' in page
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    wrong = client.post("/console/login/totp/setup/", {"code": "000000"})
    assert wrong.status_code == 200
    assert "not valid" in wrong.content.decode()
    client.post("/console/login/", {"username": "oscar", "password": PASSWORD})  # start over
    done = client.post("/console/login/totp/setup/", {"code": code_for(device)})
    assert done.status_code == 302
    assert client.get("/console/").status_code == 200
    assert client.get("/api/v1/cas/").status_code == 200
    assert AuditEvent.objects.filter(action="user.totp_enrolled", actor="oscar").exists()
    # Next time: password, then the code of the enrolled device.
    second = Client()
    step = second.post("/console/login/", {"username": "oscar", "password": PASSWORD})
    assert step["Location"].startswith("/console/login/totp/?")
    bad = second.post("/console/login/totp/", {"code": "12345"})
    assert "six digits" in bad.content.decode()
    device.refresh_from_db()
    assert second.post("/console/login/totp/", {"code": code_for(device)}).status_code == 302
    assert second.get("/console/").status_code == 200


def test_a_session_without_the_second_factor_is_refused_everywhere(issuing_ca):
    user = User.objects.create_user("oscar", password=PASSWORD)
    grant_role(user=user, role=Role.CA_OPERATOR, ca=issuing_ca, actor="t")
    client = Client()
    client.force_login(user)  # e.g. a session opened by another login form
    assert client.get("/api/v1/cas/").status_code in (401, 403)
    response = client.get("/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_a_role_granted_mid_session_asks_for_totp(c_requester, issuing_ca):
    assert c_requester.client.get("/console/").status_code == 200
    grant_role(user=c_requester.user, role=Role.CA_OPERATOR, ca=issuing_ca, actor="t")
    assert c_requester.client.get("/console/").status_code == 302


def test_totp_for_all_setting(settings, issuing_ca):
    settings.KMI_CONSOLE = {**settings.KMI_CONSOLE, "TOTP_FOR_ALL": True}
    User.objects.create_user("rita", password=PASSWORD)
    response = Client().post("/console/login/", {"username": "rita", "password": PASSWORD})
    assert response["Location"].startswith("/console/login/totp/setup/")


def test_wrong_passwords_lock_the_name_out_from_that_address(db, settings):
    User.objects.create_user("rita", password=PASSWORD)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post("/console/login/", {"username": "rita", "password": "nope"})
        assert response.status_code == 200
        assert "not right" in response.content.decode()
    locked = client.post("/console/login/", {"username": "rita", "password": "nope"})
    assert locked.status_code == 429
    # Even the right password is refused while the lock-out lasts.
    assert client.post("/console/login/", {"username": "rita", "password": PASSWORD}).status_code == 429
    # Another address is not locked out.
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert other.post("/console/login/", {"username": "rita", "password": PASSWORD}).status_code == 302


def test_pages_carry_a_csp_without_inline_script(c_requester):
    response = c_requester.client.get("/console/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    html = response.content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.search(r"<[^>]+\son[a-z]+=", html) is None  # no inline event handlers either


def test_every_response_carries_the_one_policy_except_the_swagger_page(c_requester, settings):
    from csp.utils import build_policy

    console = c_requester.client.get("/console/")["Content-Security-Policy"]
    assert console == build_policy()  # the settings' policy, as django-csp builds it
    api = Client().get("/api/v1/cas/")  # refused (401), still covered
    assert api.status_code == 401
    assert api["Content-Security-Policy"] == console
    assert "Content-Security-Policy" not in Client().get("/api/docs/")  # its inline bootstrap script


def test_cookies_are_secure_over_https(db):
    User.objects.create_user("rita", password=PASSWORD)
    client = Client()
    response = client.post("/console/login/", {"username": "rita", "password": PASSWORD}, secure=True)
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True
    plain = Client().post("/console/login/", {"username": "rita", "password": PASSWORD})
    assert not plain.cookies["sessionid"]["secure"]


def test_logout_ends_the_session_and_is_audited(c_requester):
    response = c_requester.client.post("/console/logout/")
    assert response.status_code == 302
    assert c_requester.client.get("/console/").status_code == 302
    assert AuditEvent.objects.filter(action="user.signed_out", actor="rita").exists()


def test_next_must_stay_on_this_site(db):
    User.objects.create_user("rita", password=PASSWORD)
    response = Client().post(
        "/console/login/?next=https://evil.example/", {"username": "rita", "password": PASSWORD}
    )
    assert response["Location"] == "/console/"


def test_sign_in_helper_works_twice_in_one_step(issuing_ca):
    user = User.objects.create_user("oscar", password=PASSWORD)
    grant_role(user=user, role=Role.CA_OPERATOR, ca=issuing_ca, actor="t")
    sign_in(Client(), "oscar")
    sign_in(Client(), "oscar")
