"""API fixtures: users holding each role, token-authenticated clients, an issuing CA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import time_machine
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from pki.access import grant_role
from pki.models import CertificateAuthority, Profile, Role
from pki.tokens import create_token
from web.api import throttles


@dataclass
class Actor:
    """A user, their API token text and a client that sends it."""

    user: User
    token: str
    client: APIClient


@pytest.fixture
def make_actor(db: None) -> Iterator[Callable[..., Actor]]:
    """Create a user with the given grants and a token client: make_actor("ops", (Role.CA_OPERATOR, ca))."""

    def make(username: str, *grants: tuple[Role, CertificateAuthority | None, Profile | None]) -> Actor:
        user = User.objects.create_user(username=username, password="unused-password-123")
        for role, ca, profile in grants:
            grant_role(user=user, role=role, ca=ca, profile=profile, actor="test")
        text = create_token(user=user, actor="test").text
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
        made.append(user.pk)
        return Actor(user=user, token=text, client=client)

    made: list[int] = []
    yield make
    # Throttle histories live in Redis: leave it as we found it.
    for pk in made:
        throttles.forget(pk)


@pytest.fixture
def admin(make_actor: Callable[..., Actor]) -> Actor:
    """An administrator."""
    return make_actor("alice", (Role.ADMINISTRATOR, None, None))


@pytest.fixture
def operator(make_actor: Callable[..., Actor], issuing_ca: CertificateAuthority) -> Actor:
    """The CA operator of ``issuing``."""
    return make_actor("oscar", (Role.CA_OPERATOR, issuing_ca, None))


@pytest.fixture
def requester(make_actor: Callable[..., Actor], issuing_ca: CertificateAuthority) -> Actor:
    """A requester for ``issuing`` under tls-server and code-signing."""
    return make_actor(
        "rita",
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="tls-server")),
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="code-signing")),
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="tls-client")),
    )


@pytest.fixture
def auditor(make_actor: Callable[..., Actor]) -> Actor:
    """An auditor."""
    return make_actor("audrey", (Role.AUDITOR, None, None))


@pytest.fixture
def one_throttle_window() -> Iterator[None]:
    """Keep a throttle test inside one minute window: the clock stands at second 1 of this minute
    (a test that crossed a window boundary would see its counts split between two windows)."""
    start = dt.datetime.now(dt.UTC).replace(second=1, microsecond=0)
    with time_machine.travel(start, tick=False):
        yield
