"""URLs of an ACME endpoint's resources under ``KMI_BASE_URL`` (the web adapter routes the same paths)."""

from __future__ import annotations

from pki.conf import pki_settings


def endpoint_url(name: str) -> str:
    """Base URL of the endpoint ``name``: ``KMI_BASE_URL/acme/<name>``."""
    return f"{pki_settings().base_url}/acme/{name}"


def directory_url(name: str) -> str:
    """RFC 8555 §7.1.1 directory."""
    return f"{endpoint_url(name)}/directory"


def resource_url(name: str, kind: str, token: str = "") -> str:
    """URL of a resource: ``new-nonce``, ``acct/<token>``, ``order/<token>``, ``authz/<token>`` …"""
    return f"{endpoint_url(name)}/{kind}/{token}" if token else f"{endpoint_url(name)}/{kind}"


def account_url(name: str, token: str) -> str:
    """The account URL, which is also its JWS ``kid``."""
    return resource_url(name, "acct", token)
