"""PKI settings, validated once into frozen objects: ``settings.KMI`` (``pki_settings``),
``KMI_OCSP`` (``ocsp_settings``) and ``KMI_LIFECYCLE`` (``lifecycle_settings``)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from pki.settings_registry import Invalid, coerce
from pki.settings_registry import parse_kek_lines as _parse_kek_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendConfig:
    """One configured key backend: its import path and options."""

    path: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class PKISettings:
    """Validated PKI settings."""

    base_url: str
    keks: Mapping[str, bytes] = field(repr=False)
    current_kek_id: str | None
    kek_problem: str | None
    key_backends: Mapping[str, BackendConfig]
    default_key_backend: str
    max_csr_bytes: int
    backdate_seconds: int
    audit_lanes: int
    key_cache_seconds: int
    # Revocation and CRLs (see README "Revocation and CRLs").
    crl_next_update_seconds: int = 86400
    crl_keep_expired_days: int = 0
    crl_revocation_delay_seconds: int = 60
    crl_history: int = 3
    crl_dir: Path | None = None
    crl_cache_seconds: int = 300
    # KMI_ALLOWED_DOMAINS: what the seeded profiles' "$KMI_ALLOWED_DOMAINS" pattern stands for.
    allowed_domains: tuple[str, ...] = ()
    # What KMI_KEK_FILE looked like when the KEKs were read (see current_pki_settings).
    kek_file_signature: tuple[int, int, int] | None = None


def parse_kek_lines(text: str, *, source: str) -> dict[str, bytes]:
    """Parse ``id:base64`` KEK entries (one per line or comma-separated); the last is current."""
    try:
        return _parse_kek_lines(text)
    except Invalid as exc:
        raise ImproperlyConfigured(f"{source}: {exc}") from None


def _load_keks(conf: Mapping[str, Any]) -> tuple[dict[str, bytes], str | None]:
    """Return the KEKs and, when the KEK file is missing, why there are none.

    A missing file is not fatal at start-up (``create_kek`` must be able to create it, and
    web processes with worker-only signing hold no KEK); a malformed one is.
    """
    keks: dict[str, bytes] = {}
    problem = None
    if conf.get("KEK_FILE"):
        path = Path(conf["KEK_FILE"])
        if path.exists():
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ImproperlyConfigured(f"KMI_KEK_FILE={path} cannot be read: {exc}") from None
            keks.update(parse_kek_lines(text, source=f"KMI_KEK_FILE={path}"))
        else:
            problem = f"KMI_KEK_FILE={path} does not exist (create it: manage.py create_kek --out {path})"
    if conf.get("KEK"):
        keks.update(parse_kek_lines(conf["KEK"], source="KMI_KEK"))
    if not keks and problem is None:
        problem = "no key-encryption key: set KMI_KEK_FILE or KMI_KEK (manage.py create_kek makes one)"
    return keks, problem


def build_settings(conf: Mapping[str, Any]) -> PKISettings:
    """Validate a ``settings.KMI`` mapping into ``PKISettings``."""
    base_url = coerce("KMI_BASE_URL", conf.get("BASE_URL", ""))
    keks, kek_problem = _load_keks(conf)
    backends: dict[str, BackendConfig] = {}
    for alias, spec in dict(conf.get("KEY_BACKENDS", {})).items():
        if "BACKEND" not in spec:
            raise ImproperlyConfigured(f"KMI key backend {alias!r} has no BACKEND path")
        backends[alias] = BackendConfig(spec["BACKEND"], MappingProxyType(dict(spec.get("OPTIONS", {}))))
    default = str(conf.get("DEFAULT_KEY_BACKEND", "encrypted"))
    if default not in backends:
        raise ImproperlyConfigured(f"KMI_DEFAULT_KEY_BACKEND={default!r} is not a configured backend")
    kek_file = str(conf.get("KEK_FILE") or "")
    return PKISettings(
        kek_file_signature=_kek_file_signature(kek_file) if kek_file else None,
        base_url=base_url,
        keks=MappingProxyType(keks),
        current_kek_id=next(reversed(keks)) if keks else None,
        kek_problem=kek_problem,
        key_backends=MappingProxyType(backends),
        default_key_backend=default,
        max_csr_bytes=coerce("KMI_MAX_CSR_BYTES", conf.get("MAX_CSR_BYTES")),
        backdate_seconds=coerce("KMI_BACKDATE_SECONDS", conf.get("BACKDATE_SECONDS")),
        audit_lanes=coerce("KMI_AUDIT_LANES", conf.get("AUDIT_LANES")),
        key_cache_seconds=coerce("KMI_KEY_CACHE_SECONDS", conf.get("KEY_CACHE_SECONDS")),
        allowed_domains=coerce("KMI_ALLOWED_DOMAINS", conf.get("ALLOWED_DOMAINS")),
        **_crl_settings(conf),
    )


def _crl_settings(conf: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the CRL settings (lifetime, retention, publication delay, output directory)."""
    crl_dir = coerce("KMI_CRL_DIR", conf.get("CRL_DIR") or "")
    return {
        "crl_next_update_seconds": coerce("KMI_CRL_NEXT_UPDATE_SECONDS", conf.get("CRL_NEXT_UPDATE_SECONDS")),
        "crl_keep_expired_days": coerce("KMI_CRL_KEEP_EXPIRED_DAYS", conf.get("CRL_KEEP_EXPIRED_DAYS")),
        "crl_revocation_delay_seconds": coerce("KMI_CRL_REVOCATION_DELAY", conf.get("CRL_REVOCATION_DELAY")),
        "crl_history": coerce("KMI_CRL_HISTORY", conf.get("CRL_HISTORY")),
        "crl_cache_seconds": coerce("KMI_CRL_CACHE_SECONDS", conf.get("CRL_CACHE_SECONDS")),
        "crl_dir": Path(crl_dir) if crl_dir else None,
    }


@functools.cache
def pki_settings() -> PKISettings:
    """Return the validated PKI settings (computed once per process)."""
    return build_settings(settings.KMI)


# KMI_KEK_FILE is looked at (one stat) at most this often by a process that uses a KEK.
KEK_FILE_CHECK_SECONDS = 1.0
_kek_file_checked = [0.0]


def _kek_file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def current_pki_settings(*, force: bool = False) -> PKISettings:
    """``pki_settings()``, re-read when ``KMI_KEK_FILE`` changed since it was read.

    A KEK rotation (``create_kek`` then ``rewrap_keys``) on a live system changes the file under
    running processes: each one picks the new KEKs up within ``KEK_FILE_CHECK_SECONDS`` of using
    a key (or at once, with ``force``, when a key names a KEK it does not know), without a
    restart. A file that does not parse keeps the KEKs read before, and says so in the log.
    """
    conf = pki_settings()
    path = settings.KMI.get("KEK_FILE") if isinstance(settings.KMI, Mapping) else None
    if not path:
        return conf
    now = time.monotonic()
    if not force and now - _kek_file_checked[0] < KEK_FILE_CHECK_SECONDS:
        return conf
    _kek_file_checked[0] = now
    if _kek_file_signature(str(path)) == conf.kek_file_signature:
        return conf
    try:
        build_settings(settings.KMI)
    except ImproperlyConfigured as exc:
        log.error("KMI_KEK_FILE changed but cannot be used (%s); keeping the KEKs read before", exc)
        return conf
    pki_settings.cache_clear()
    fresh = pki_settings()
    log.warning("KMI_KEK_FILE changed: KEKs re-read (current %s)", fresh.current_kek_id)
    return fresh


def reset() -> None:
    """Forget the cached settings (tests that change ``settings.KMI``, ``KMI_OCSP`` or
    ``KMI_LIFECYCLE`` call this)."""
    pki_settings.cache_clear()
    ocsp_settings.cache_clear()
    lifecycle_settings.cache_clear()
    _kek_file_checked[0] = 0.0


# --- OCSP responder --------------------------------------------------------------------------


@dataclass(frozen=True)
class OCSPSettings:
    """Validated OCSP responder settings (``settings.KMI_OCSP``)."""

    redis_url: str
    redis_prefix: str
    response_validity_seconds: int
    responder_validity_days: int
    responder_renew_fraction: float
    responder_key_type: str
    max_request_bytes: int
    local_cache_seconds: float
    presign_delay_seconds: float


def build_ocsp_settings(conf: Mapping[str, Any], *, redis_url: str) -> OCSPSettings:
    """Validate a ``settings.KMI_OCSP`` mapping into ``OCSPSettings``."""
    from pki.models.key import KeyType

    key_type = coerce("KMI_OCSP_RESPONDER_KEY_TYPE", conf.get("RESPONDER_KEY_TYPE"))
    if key_type not in KeyType.values:
        raise ImproperlyConfigured(
            f"KMI_OCSP_RESPONDER_KEY_TYPE={key_type!r} is not one of {', '.join(KeyType.values)}"
        )
    return OCSPSettings(
        redis_url=redis_url,
        redis_prefix=coerce("KMI_OCSP_REDIS_PREFIX", conf.get("REDIS_PREFIX")),
        response_validity_seconds=coerce(
            "KMI_OCSP_RESPONSE_VALIDITY_SECONDS", conf.get("RESPONSE_VALIDITY_SECONDS")
        ),
        responder_validity_days=coerce(
            "KMI_OCSP_RESPONDER_VALIDITY_DAYS", conf.get("RESPONDER_VALIDITY_DAYS")
        ),
        responder_renew_fraction=coerce(
            "KMI_OCSP_RESPONDER_RENEW_FRACTION", conf.get("RESPONDER_RENEW_FRACTION")
        ),
        responder_key_type=key_type,
        max_request_bytes=coerce("KMI_OCSP_MAX_REQUEST_BYTES", conf.get("MAX_REQUEST_BYTES")),
        local_cache_seconds=coerce("KMI_OCSP_LOCAL_CACHE_SECONDS", conf.get("LOCAL_CACHE_SECONDS")),
        presign_delay_seconds=coerce("KMI_OCSP_PRESIGN_DELAY_SECONDS", conf.get("PRESIGN_DELAY_SECONDS")),
    )


@functools.cache
def ocsp_settings() -> OCSPSettings:
    """Return the validated OCSP settings (computed once per process)."""
    conf = getattr(settings, "KMI_OCSP", {})
    return build_ocsp_settings(conf, redis_url=getattr(settings, "REDIS_URL", ""))


# --- Lifecycle (scheduled jobs, notifications, signing placement) ------------------------------


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
