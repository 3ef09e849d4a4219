"""Renderers for downloads (PEM, DER, PKCS#7, PKCS#12, JSON lines); errors still render as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer


class DownloadRenderer(BaseRenderer):
    """Passes bytes through; a problem document (a dict) is written as JSON."""

    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        """Return the body bytes."""
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        return json.dumps(data).encode()


class PemRenderer(DownloadRenderer):
    """PEM certificates (one, or a chain)."""

    media_type = "application/pem-certificate-chain"
    format = "pem"


class DerRenderer(DownloadRenderer):
    """A DER certificate (RFC 2585)."""

    media_type = "application/pkix-cert"
    format = "der"


class Pkcs7Renderer(DownloadRenderer):
    """A certs-only PKCS#7 (RFC 2315 / RFC 5652) bundle."""

    media_type = "application/pkcs7-mime"
    format = "p7c"


class Pkcs12Renderer(DownloadRenderer):
    """A password-protected PKCS#12."""

    media_type = "application/x-pkcs12"
    format = "p12"
