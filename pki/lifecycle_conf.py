"""Lifecycle settings (scheduled jobs, notifications, signing placement), validated once."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from pki.settings_registry import coerce


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
    summary_seconds: int = 300  # the dashboard's certificate summary is recomputed this often
    # Approved requests nobody issued (the client gave up, the signer was down): re-tried after
    # this long, given up (state failed) once this old. pki.lifecycle.reconcile_approved_requests.
    reconcile_after_seconds: int = 300
    approved_max_age_seconds: int = 86400
    # Key of the HMAC over signing jobs and their results (pki.signing); web and signers hold it.
    signing_secret: bytes = field(default=b"", repr=False)

    @property
    def signs_on_worker(self) -> bool:
        """True when CA-key operations run only on the ``signing`` queue."""
        return self.signing == "worker"


def build_lifecycle_settings(conf: Mapping[str, Any]) -> LifecycleSettings:
    """Validate a ``settings.KMI_LIFECYCLE`` mapping."""
    return LifecycleSettings(
        signing=coerce("KMI_SIGNING", conf.get("SIGNING")),
        signing_timeout=coerce("KMI_SIGNING_TIMEOUT", conf.get("SIGNING_TIMEOUT")),
        expiry_thresholds=coerce("KMI_EXPIRY_THRESHOLDS", conf.get("EXPIRY_THRESHOLDS")),
        ca_expiry_thresholds=coerce("KMI_CA_EXPIRY_THRESHOLDS", conf.get("CA_EXPIRY_THRESHOLDS")),
        alert_emails=coerce("KMI_ALERT_EMAILS", conf.get("ALERT_EMAILS")),
        alert_webhook_url=coerce("KMI_ALERT_WEBHOOK_URL", conf.get("ALERT_WEBHOOK_URL")),
        webhook_secret=coerce("KMI_WEBHOOK_SECRET", conf.get("WEBHOOK_SECRET")).encode(),
        webhook_timeout=coerce("KMI_WEBHOOK_TIMEOUT", conf.get("WEBHOOK_TIMEOUT")),
        notify_max_attempts=coerce("KMI_NOTIFY_MAX_ATTEMPTS", conf.get("NOTIFY_MAX_ATTEMPTS")),
        notify_retry_seconds=coerce("KMI_NOTIFY_RETRY_SECONDS", conf.get("NOTIFY_RETRY_SECONDS")),
        notify_claim_lease_seconds=coerce(
            "KMI_NOTIFY_CLAIM_LEASE_SECONDS", conf.get("NOTIFY_CLAIM_LEASE_SECONDS")
        ),
        auto_renew_days=coerce("KMI_AUTO_RENEW_DAYS", conf.get("AUTO_RENEW_DAYS")),
        auto_renew_new_key=coerce("KMI_AUTO_RENEW_NEW_KEY", conf.get("AUTO_RENEW_NEW_KEY")),
        key_retention_days=coerce("KMI_KEY_RETENTION_DAYS", conf.get("KEY_RETENTION_DAYS")),
        scan_seconds=coerce("KMI_LIFECYCLE_SCAN_SECONDS", conf.get("SCAN_SECONDS")),
        service_cert_names=coerce("KMI_SERVICE_CERT_NAMES", conf.get("SERVICE_CERT_NAMES")),
        service_cert_dir=coerce("KMI_SERVICE_CERT_DIR", conf.get("SERVICE_CERT_DIR")),
        service_ca=coerce("KMI_SERVICE_CA", conf.get("SERVICE_CA")),
        service_profile=coerce("KMI_SERVICE_PROFILE", conf.get("SERVICE_PROFILE")),
        service_renew_days=coerce("KMI_SERVICE_RENEW_DAYS", conf.get("SERVICE_RENEW_DAYS")),
        metrics_token=coerce("KMI_METRICS_TOKEN", conf.get("METRICS_TOKEN")),
        summary_seconds=coerce("KMI_CONSOLE_SUMMARY_SECONDS", conf.get("SUMMARY_SECONDS")),
        reconcile_after_seconds=coerce("KMI_RECONCILE_AFTER_SECONDS", conf.get("RECONCILE_AFTER_SECONDS")),
        approved_max_age_seconds=coerce("KMI_APPROVED_MAX_AGE_SECONDS", conf.get("APPROVED_MAX_AGE_SECONDS")),
        signing_secret=coerce("KMI_SIGNING_SECRET", conf.get("SIGNING_SECRET")).encode(),
    )


@functools.cache
def lifecycle_settings() -> LifecycleSettings:
    """Return the validated lifecycle settings (computed once per process)."""
    return build_lifecycle_settings(getattr(settings, "KMI_LIFECYCLE", {}))


def reset() -> None:
    """Forget the cached settings (tests that change ``settings.KMI_LIFECYCLE`` call this)."""
    lifecycle_settings.cache_clear()
