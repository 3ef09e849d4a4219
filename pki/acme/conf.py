"""ACME settings, read from ``settings.KMI_ACME`` into a frozen object on each use (cheap)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from pki.settings_registry import coerce


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


def acme_settings() -> AcmeSettings:
    """Return the ACME settings (``settings.KMI_ACME``), validated."""
    conf = getattr(settings, "KMI_ACME", {})
    return AcmeSettings(
        http01_port=coerce("KMI_ACME_HTTP01_PORT", conf.get("HTTP01_PORT")),
        tls_alpn01_port=coerce("KMI_ACME_TLS_ALPN01_PORT", conf.get("TLS_ALPN01_PORT")),
        dns_resolvers=coerce("KMI_ACME_DNS_RESOLVERS", conf.get("DNS_RESOLVERS")),
        hosts=coerce("KMI_ACME_HOSTS", conf.get("HOSTS")),
        validation_timeout=float(coerce("KMI_ACME_VALIDATION_TIMEOUT", conf.get("VALIDATION_TIMEOUT"))),
        validate_inline=coerce("KMI_ACME_VALIDATE_INLINE", conf.get("VALIDATE_INLINE")),
        nonce_ttl=coerce("KMI_ACME_NONCE_TTL", conf.get("NONCE_TTL")),
        nonce_prefix=str(conf.get("NONCE_PREFIX", "kmi:acme:nonce:")),
        order_lifetime_seconds=coerce("KMI_ACME_ORDER_LIFETIME", conf.get("ORDER_LIFETIME")),
        max_body_bytes=coerce("KMI_ACME_MAX_BODY_BYTES", conf.get("MAX_BODY_BYTES")),
        max_http01_bytes=int(conf.get("MAX_HTTP01_BYTES", 8192)),
        retry_after_seconds=coerce("KMI_ACME_RETRY_AFTER", conf.get("RETRY_AFTER")),
        reuse_authorizations=coerce("KMI_ACME_REUSE_AUTHORIZATIONS", conf.get("REUSE_AUTHORIZATIONS")),
    )
