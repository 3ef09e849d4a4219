"""ACME settings, read from ``settings.KMI_ACME`` into a frozen object on each use (cheap)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class AcmeSettings:
    """Validated ACME settings."""

    http01_port: int
    tls_alpn01_port: int
    dns_resolvers: tuple[tuple[str, int], ...]
    hosts: tuple[tuple[str, str], ...]
    validation_timeout: float
    validate_inline: bool
    nonce_ttl: int
    nonce_prefix: str
    order_lifetime_seconds: int
    max_body_bytes: int
    max_http01_bytes: int
    retry_after_seconds: int
    reuse_authorizations: bool


def _resolvers(text: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith("["):  # [v6]:port
            host, _, port = item[1:].partition("]:")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, "53"
        try:
            out.append((host, int(port or 53)))
        except ValueError:
            raise ImproperlyConfigured(
                f"KMI_ACME_DNS_RESOLVERS: bad entry {item!r} (use ip or ip:port)"
            ) from None
    return tuple(out)


def _hosts(text: str) -> tuple[tuple[str, str], ...]:
    """``pattern=address`` pairs: ``**.example.test=127.0.0.1,localhost=::1``."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        pattern, sep, address = item.partition("=")
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            ip = None
        if not sep or not pattern.strip() or ip is None:
            raise ImproperlyConfigured(
                f"KMI_ACME_HOSTS: bad entry {item!r} (use name-or-glob=ip, e.g. **.example.test=127.0.0.1)"
            )
        out.append((pattern.strip().lower(), str(ip)))
    return tuple(out)


def acme_settings() -> AcmeSettings:
    """Return the ACME settings (``settings.KMI_ACME``), validated."""
    conf = getattr(settings, "KMI_ACME", {})
    return AcmeSettings(
        http01_port=int(conf.get("HTTP01_PORT", 80)),
        tls_alpn01_port=int(conf.get("TLS_ALPN01_PORT", 443)),
        dns_resolvers=_resolvers(str(conf.get("DNS_RESOLVERS", ""))),
        hosts=_hosts(str(conf.get("HOSTS", ""))),
        validation_timeout=float(conf.get("VALIDATION_TIMEOUT", 10)),
        validate_inline=bool(conf.get("VALIDATE_INLINE", False)),
        nonce_ttl=int(conf.get("NONCE_TTL", 3600)),
        nonce_prefix=str(conf.get("NONCE_PREFIX", "kmi:acme:nonce:")),
        order_lifetime_seconds=int(conf.get("ORDER_LIFETIME", 7 * 86400)),
        max_body_bytes=int(conf.get("MAX_BODY_BYTES", 65536)),
        max_http01_bytes=int(conf.get("MAX_HTTP01_BYTES", 8192)),
        retry_after_seconds=int(conf.get("RETRY_AFTER", 1)),
        reuse_authorizations=bool(conf.get("REUSE_AUTHORIZATIONS", True)),
    )
