"""What the EST and SCEP adapters share: their settings and the TLS client certificate of a request."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.http import HttpRequest

# Set by web.tls_worker when gunicorn terminates TLS itself (DER of the verified peer certificate).
ENVIRON_CLIENT_CERT = "kmi.tls_client_cert"
ENVIRON_TLS_UNIQUE = "kmi.tls_unique"
# Sent by the TLS proxy (docker/nginx): the verified certificate, URL-escaped PEM, and the secret
# that proves the proxy sent it (nginx replaces any client-supplied header of these names).
PROXY_CERT_HEADER = "HTTP_X_KMI_CLIENT_CERT"
PROXY_SECRET_HEADER = "HTTP_X_KMI_PROXY_SECRET"  # noqa: S105 - a header name, not a secret


@dataclass(frozen=True)
class DeviceSettings:
    """The device-enrollment settings (``settings.KMI_DEVICES``)."""

    est_proxy_secret: str
    retry_after: int


def device_settings() -> DeviceSettings:
    """Return ``settings.KMI_DEVICES`` (validated by the settings registry at start-up)."""
    conf = getattr(settings, "KMI_DEVICES", {})
    return DeviceSettings(
        est_proxy_secret=str(conf.get("EST_PROXY_SECRET", "")),
        retry_after=int(conf.get("RETRY_AFTER", 300)),
    )


def client_certificate(request: HttpRequest) -> bytes | None:
    """DER of the TLS client certificate the request came with, when KMI can trust it: from its
    own TLS termination, or from the proxy that proved itself with ``KMI_EST_PROXY_SECRET``."""
    own = request.META.get(ENVIRON_CLIENT_CERT)
    if isinstance(own, bytes) and own:
        return own
    passed = request.META.get(PROXY_CERT_HEADER, "")
    secret = device_settings().est_proxy_secret
    if not passed or not secret:
        return None
    if not hmac.compare_digest(str(request.META.get(PROXY_SECRET_HEADER, "")).encode(), secret.encode()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(unquote(passed).encode())
    except ValueError:
        return None
    return cert.public_bytes(serialization.Encoding.DER)
