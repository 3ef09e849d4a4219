"""Console fixtures: users holding each role, and browser-like clients signed in through the real
sign-in pages (password, then a TOTP code where the roles need one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from pki.access import grant_role
from pki.models import CertificateAuthority, Profile, Role

PASSWORD = "a-long-password-42"


def code_for(device: TOTPDevice) -> str:
    """A six-digit code ``device`` accepts now: the current step's, or the next one when the
    current step's was used already (a code is good once, RFC 6238 §5.2; one step of tolerance)."""
    import time

    t = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    t.time = time.time()
    t.drift = device.drift + max(0, device.last_t + 1 - t.t())
    return f"{t.token():0{device.digits}d}"


def sign_in(client: Client, username: str, password: str = PASSWORD) -> None:
    """Go through /console/login/ (and the TOTP step or first enrolment) like a browser."""
    response = client.post("/console/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:500]
    target = response["Location"]
    if "/totp/" in target:
        user = User.objects.get(username=username)
        device = TOTPDevice.objects.filter(user=user).order_by("pk").first()
        if device is None:  # first sign-in: the setup page makes the device
            assert client.get(target).status_code == 200
            device = TOTPDevice.objects.get(user=user)
        response = client.post(target, {"code": code_for(device)})
        assert response.status_code == 302, response.content[:800]
    assert response["Location"].startswith("/console/")


@dataclass
class Person:
    """A user and a client signed in as them."""

    user: User
    client: Client


@pytest.fixture
def person(db: None) -> Callable[..., Person]:
    """``person("oscar", (Role.CA_OPERATOR, ca, None))``: a user with grants, signed in."""

    def make(
        username: str, *grants: tuple[Role, CertificateAuthority | None, Profile | None], secure: bool = False
    ) -> Person:
        user = User.objects.create_user(username=username, password=PASSWORD)
        for role, ca, profile in grants:
            grant_role(user=user, role=role, ca=ca, profile=profile, actor="test")
        client = Client(enforce_csrf_checks=False)
        sign_in(client, username)
        return Person(user=user, client=client)

    return make


@pytest.fixture
def c_admin(person: Callable[..., Person]) -> Person:
    """An administrator (signed in with TOTP)."""
    return person("alice", (Role.ADMINISTRATOR, None, None))


@pytest.fixture
def c_operator(person: Callable[..., Person], issuing_ca: CertificateAuthority) -> Person:
    """The CA operator of ``issuing`` (signed in with TOTP)."""
    return person("oscar", (Role.CA_OPERATOR, issuing_ca, None))


@pytest.fixture
def c_requester(person: Callable[..., Person], issuing_ca: CertificateAuthority) -> Person:
    """A requester for ``issuing`` under tls-server and code-signing (password only)."""
    return person(
        "rita",
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="tls-server")),
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="code-signing")),
    )


@pytest.fixture
def c_auditor(person: Callable[..., Person]) -> Person:
    """An auditor (password only)."""
    return person("audrey", (Role.AUDITOR, None, None))
