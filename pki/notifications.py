"""Delivering notices: e-mail through Django's e-mail backend, webhooks as HMAC-signed JSON.

A webhook is a ``POST`` of JSON with these headers:

- ``X-KMI-Event``: the event name (``certificate.expiring``, ``ca.expiring``);
- ``X-KMI-Delivery``: the notice's idempotency key (the same on every retry: receivers drop
  repeats by it);
- ``X-KMI-Timestamp``: Unix seconds when this attempt was signed;
- ``X-KMI-Signature``: ``sha256=`` + hex HMAC-SHA256 under ``KMI_WEBHOOK_SECRET`` over
  ``timestamp + "." + body`` (the receiver recomputes it and compares in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage

from pki.conf import lifecycle_settings
from pki.exceptions import NotificationFailed

SIGNATURE_HEADER = "X-KMI-Signature"
TIMESTAMP_HEADER = "X-KMI-Timestamp"
DELIVERY_HEADER = "X-KMI-Delivery"
EVENT_HEADER = "X-KMI-Event"


def webhook_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Return the ``X-KMI-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_webhook_signature(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """True when ``signature`` is the HMAC of ``body`` at ``timestamp`` (what receivers check)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    return hmac.compare_digest(webhook_signature(secret, ts, body), signature)


def send_webhook(
    *, url: str, event: str, payload: Mapping[str, Any], delivery_id: str, timestamp: int
) -> int:
    """POST the signed JSON ``payload``; return the HTTP status or raise ``NotificationFailed``."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise NotificationFailed(f"webhook {url!r} is not an http(s) URL")
    conf = lifecycle_settings()
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "KMI-webhook/1",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
    }
    if conf.webhook_secret:
        headers[SIGNATURE_HEADER] = webhook_signature(conf.webhook_secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=conf.webhook_timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise NotificationFailed(f"webhook {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotificationFailed(f"webhook {url} unreachable: {reason}") from None
    if not 200 <= status < 300:
        raise NotificationFailed(f"webhook {url} answered HTTP {status}")
    return status


def send_email(*, recipients: Sequence[str], subject: str, body: str, delivery_id: str) -> None:
    """Send one plain-text e-mail through Django's backend or raise ``NotificationFailed``."""
    domain = str(settings.DEFAULT_FROM_EMAIL).rpartition("@")[2] or "kmi.invalid"
    message = EmailMessage(
        subject=subject,
        body=body,
        to=list(recipients),
        headers={"Message-ID": f"<{delivery_id}@{domain}>", DELIVERY_HEADER: delivery_id},
    )
    try:
        message.send(fail_silently=False)
    except OSError as exc:  # smtplib.SMTPException is an OSError
        raise NotificationFailed(f"e-mail to {', '.join(recipients)} failed: {exc}") from None
