"""API token authentication: ``Authorization: Bearer kmi_<prefix>_<secret>`` (or ``Token …``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from pki import tokens
from pki.models.access import ApiToken

KEYWORDS = ("bearer", "token")


def offers_token(header: str) -> bool:
    """True when an ``Authorization`` header names a token scheme (well formed or not)."""
    return header.split(None, 1)[0].lower() in KEYWORDS if header.strip() else False


def offered_token(header: str) -> str | None:
    """The token text of an ``Authorization`` header: None when it names no token scheme;
    ``AuthenticationFailed`` when it does but is malformed."""
    if not offers_token(header):
        return None
    parts = header.split()
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("the Authorization header holds one token after its keyword")
    if not parts[1].isascii():
        raise exceptions.AuthenticationFailed("the token is not ASCII")
    return parts[1]


def token_actor(token: ApiToken) -> str:
    """The audit actor of a token-authenticated call: the user name and the token's prefix."""
    return f"{token.user.get_username()} (token {token.prefix})"[:150]


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """Looks the token up by its prefix and compares the SHA-256 of its secret (pki.tokens)."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiToken] | None:
        """Return (user, token) for a valid token, None when no token is offered."""
        text = offered_token(str(request.META.get("HTTP_AUTHORIZATION", "")))
        if text is None:
            return None
        token = tokens.authenticate(text)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        """Makes unauthenticated requests get 401 with ``WWW-Authenticate: Bearer``."""
        return 'Bearer realm="kmi"'


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describes the token scheme in the OpenAPI schema."""

    target_class = "web.api.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        """An HTTP bearer scheme."""
        return {"type": "http", "scheme": "bearer", "bearerFormat": "kmi_<prefix>_<secret>"}
