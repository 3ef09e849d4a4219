"""Lifecycle settings (scheduled jobs, notifications, signing placement), validated once."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SIGNING_MODES = ("inprocess", "worker")


@dataclass(frozen=True)
class LifecycleSettings:
    """Validated ``settings.KMI_LIFECYCLE``."""

    signing: str
    signing_timeout: int
    expiry_thresholds: tuple[int, ...]
    ca_expiry_thresholds: tuple[int, ...]
    alert_emails: tuple[str, ...]
    alert_webhook_url: str
    webhook_secret: bytes = field(repr=False)
    webhook_timeout: int
    notify_max_attempts: int
    notify_retry_seconds: int
    notify_claim_lease_seconds: int
    auto_renew_days: int
    auto_renew_new_key: bool
    key_retention_days: int
    scan_seconds: int
    service_cert_names: tuple[str, ...]
    service_cert_dir: str
    service_ca: str
    service_profile: str
    service_renew_days: int
    metrics_token: str = field(repr=False)
    # Approved requests nobody issued (the client gave up, the signer was down): re-tried after
    # this long, given up (state failed) once this old. pki.lifecycle.reconcile_approved_requests.
    reconcile_after_seconds: int = 300
    approved_max_age_seconds: int = 86400

    @property
    def signs_on_worker(self) -> bool:
        """True when CA-key operations run only on the ``signing`` queue."""
        return self.signing == "worker"


def _days(raw: str, *, name: str) -> tuple[int, ...]:
    try:
        values = sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} must be comma-separated whole days, e.g. 30,14,7,1"
        ) from None
    if any(v < 1 for v in values):
        raise ImproperlyConfigured(f"{name}={raw!r}: every threshold must be at least 1 day")
    return tuple(values)


def _url(raw: str, *, name: str) -> str:
    if raw and urlsplit(raw).scheme not in {"http", "https"}:
        raise ImproperlyConfigured(f"{name}={raw!r} must be an http(s) URL")
    return raw


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.replace("\n", ",").split(",") if part.strip())


def build_lifecycle_settings(conf: Mapping[str, Any]) -> LifecycleSettings:
    """Validate a ``settings.KMI_LIFECYCLE`` mapping."""
    signing = str(conf.get("SIGNING", "inprocess")).strip().lower()
    if signing not in SIGNING_MODES:
        raise ImproperlyConfigured(f"KMI_SIGNING={signing!r} must be one of {', '.join(SIGNING_MODES)}")
    return LifecycleSettings(
        signing=signing,
        signing_timeout=int(conf.get("SIGNING_TIMEOUT", 30)),
        expiry_thresholds=_days(
            str(conf.get("EXPIRY_THRESHOLDS", "30,14,7,1")), name="KMI_EXPIRY_THRESHOLDS"
        ),
        ca_expiry_thresholds=_days(
            str(conf.get("CA_EXPIRY_THRESHOLDS", "180,90,30,7")), name="KMI_CA_EXPIRY_THRESHOLDS"
        ),
        alert_emails=_list(str(conf.get("ALERT_EMAILS", ""))),
        alert_webhook_url=_url(str(conf.get("ALERT_WEBHOOK_URL", "")), name="KMI_ALERT_WEBHOOK_URL"),
        webhook_secret=str(conf.get("WEBHOOK_SECRET", "")).encode(),
        webhook_timeout=int(conf.get("WEBHOOK_TIMEOUT", 10)),
        notify_max_attempts=int(conf.get("NOTIFY_MAX_ATTEMPTS", 5)),
        notify_retry_seconds=int(conf.get("NOTIFY_RETRY_SECONDS", 300)),
        notify_claim_lease_seconds=int(conf.get("NOTIFY_CLAIM_LEASE_SECONDS", 900)),
        auto_renew_days=int(conf.get("AUTO_RENEW_DAYS", 30)),
        auto_renew_new_key=bool(conf.get("AUTO_RENEW_NEW_KEY", False)),
        key_retention_days=int(conf.get("KEY_RETENTION_DAYS", 365)),
        scan_seconds=int(conf.get("SCAN_SECONDS", 3600)),
        service_cert_names=_list(str(conf.get("SERVICE_CERT_NAMES", ""))),
        service_cert_dir=str(conf.get("SERVICE_CERT_DIR", "")),
        service_ca=str(conf.get("SERVICE_CA", "issuing")),
        service_profile=str(conf.get("SERVICE_PROFILE", "tls-server")),
        service_renew_days=int(conf.get("SERVICE_RENEW_DAYS", 30)),
        metrics_token=str(conf.get("METRICS_TOKEN", "")),
        reconcile_after_seconds=int(conf.get("RECONCILE_AFTER_SECONDS", 300)),
        approved_max_age_seconds=int(conf.get("APPROVED_MAX_AGE_SECONDS", 86400)),
    )


@functools.cache
def lifecycle_settings() -> LifecycleSettings:
    """Return the validated lifecycle settings (computed once per process)."""
    return build_lifecycle_settings(getattr(settings, "KMI_LIFECYCLE", {}))


def reset() -> None:
    """Forget the cached settings (tests that change ``settings.KMI_LIFECYCLE`` call this)."""
    lifecycle_settings.cache_clear()
