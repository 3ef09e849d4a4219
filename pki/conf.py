"""PKI settings, validated once from ``settings.KMI`` into a frozen object."""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

KEK_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEK_BYTES = 32  # AES-256


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
    # What KMI_KEK_FILE looked like when the KEKs were read (see current_pki_settings).
    kek_file_signature: tuple[int, int, int] | None = None


def parse_kek_lines(text: str, *, source: str) -> dict[str, bytes]:
    """Parse ``id:base64`` KEK entries (one per line or comma-separated); the last is current."""
    keks: dict[str, bytes] = {}
    entries = [
        part.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for part in line.split(",")
    ]
    for number, line in enumerate((e for e in entries if e), start=1):
        kek_id, sep, b64 = line.partition(":")
        kek_id = kek_id.strip()
        if not sep or not KEK_ID_RE.match(kek_id):
            # Never echo the entry: a mis-pasted line may be the key itself.
            raise ImproperlyConfigured(
                f"{source}: KEK entry {number} ({len(line)} characters) is not 'id:base64key'"
                " with an id of letters, digits, '.', '_' or '-'"
            )
        try:
            key = base64.urlsafe_b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4))
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{source}: KEK {kek_id!r} is not valid base64") from None
        if len(key) != KEK_BYTES:
            raise ImproperlyConfigured(
                f"{source}: KEK {kek_id!r} is {len(key)} bytes; a KEK is {KEK_BYTES} bytes (AES-256)"
            )
        keks.pop(kek_id, None)  # re-listing an id moves it to the end (makes it current)
        keks[kek_id] = key
    return keks


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
    base_url = str(conf.get("BASE_URL", "")).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"KMI_BASE_URL={base_url!r} must be an absolute http(s) URL such as http://pki.example.test"
        )
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
        max_csr_bytes=int(conf.get("MAX_CSR_BYTES", 16384)),
        backdate_seconds=int(conf.get("BACKDATE_SECONDS", 60)),
        audit_lanes=int(conf.get("AUDIT_LANES", 8)),
        key_cache_seconds=int(conf.get("KEY_CACHE_SECONDS", 300)),
        **_crl_settings(conf),
    )


def _crl_settings(conf: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the CRL settings (lifetime, retention, publication delay, output directory)."""
    values: dict[str, Any] = {
        "crl_next_update_seconds": int(conf.get("CRL_NEXT_UPDATE_SECONDS", 86400)),
        "crl_keep_expired_days": int(conf.get("CRL_KEEP_EXPIRED_DAYS", 0)),
        "crl_revocation_delay_seconds": int(conf.get("CRL_REVOCATION_DELAY", 60)),
        "crl_history": int(conf.get("CRL_HISTORY", 3)),
        "crl_cache_seconds": int(conf.get("CRL_CACHE_SECONDS", 300)),
    }
    if values["crl_next_update_seconds"] < 60:
        raise ImproperlyConfigured("KMI_CRL_NEXT_UPDATE_SECONDS must be at least 60")
    if values["crl_revocation_delay_seconds"] < 2:
        raise ImproperlyConfigured("KMI_CRL_REVOCATION_DELAY must be at least 2 seconds")
    if values["crl_keep_expired_days"] < 0 or values["crl_cache_seconds"] < 0:
        raise ImproperlyConfigured("KMI_CRL_KEEP_EXPIRED_DAYS and KMI_CRL_CACHE_SECONDS cannot be negative")
    if values["crl_history"] < 1:
        raise ImproperlyConfigured("KMI_CRL_HISTORY must keep at least the latest CRL (1)")
    crl_dir = str(conf.get("CRL_DIR", "") or "")
    values["crl_dir"] = Path(crl_dir) if crl_dir else None
    return values


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
    """Forget the cached settings (tests that change ``settings.KMI`` call this)."""
    pki_settings.cache_clear()
    ocsp_settings.cache_clear()
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

    validity = int(conf.get("RESPONSE_VALIDITY_SECONDS", 3600))
    if validity < 60:
        raise ImproperlyConfigured(f"KMI_OCSP_RESPONSE_VALIDITY_SECONDS={validity} is below 60")
    days = int(conf.get("RESPONDER_VALIDITY_DAYS", 7))
    if not 1 <= days <= 30:  # the seeded ocsp-signing profile caps validity at 30 days
        raise ImproperlyConfigured(f"KMI_OCSP_RESPONDER_VALIDITY_DAYS={days} must be 1 to 30")
    try:
        fraction = float(conf.get("RESPONDER_RENEW_FRACTION", 0.5))
    except ValueError:
        raise ImproperlyConfigured("KMI_OCSP_RESPONDER_RENEW_FRACTION must be a number") from None
    if not 0 < fraction < 1:
        raise ImproperlyConfigured(f"KMI_OCSP_RESPONDER_RENEW_FRACTION={fraction} must be between 0 and 1")
    key_type = str(conf.get("RESPONDER_KEY_TYPE", KeyType.EC_P256))
    if key_type not in KeyType.values:
        raise ImproperlyConfigured(
            f"KMI_OCSP_RESPONDER_KEY_TYPE={key_type!r} is not one of {', '.join(KeyType.values)}"
        )
    prefix = str(conf.get("REDIS_PREFIX", "kmi:ocsp"))
    if not prefix or any(c.isspace() for c in prefix):
        raise ImproperlyConfigured(f"KMI_OCSP_REDIS_PREFIX={prefix!r} must be non-empty, without spaces")
    max_bytes = int(conf.get("MAX_REQUEST_BYTES", 4096))
    if max_bytes < 256:
        raise ImproperlyConfigured(f"KMI_OCSP_MAX_REQUEST_BYTES={max_bytes} is below 256")
    try:
        local = float(conf.get("LOCAL_CACHE_SECONDS", 1.0))
    except ValueError:
        raise ImproperlyConfigured("KMI_OCSP_LOCAL_CACHE_SECONDS must be a number") from None
    if not 0 <= local <= 60:
        raise ImproperlyConfigured(f"KMI_OCSP_LOCAL_CACHE_SECONDS={local} must be 0 to 60")
    try:
        presign_delay = float(conf.get("PRESIGN_DELAY_SECONDS", 2.0))
    except ValueError:
        raise ImproperlyConfigured("KMI_OCSP_PRESIGN_DELAY_SECONDS must be a number") from None
    if not 0 <= presign_delay <= 60:
        raise ImproperlyConfigured(f"KMI_OCSP_PRESIGN_DELAY_SECONDS={presign_delay} must be 0 to 60")
    return OCSPSettings(
        redis_url=redis_url,
        redis_prefix=prefix,
        response_validity_seconds=validity,
        responder_validity_days=days,
        responder_renew_fraction=fraction,
        responder_key_type=key_type,
        max_request_bytes=max_bytes,
        local_cache_seconds=local,
        presign_delay_seconds=presign_delay,
    )


@functools.cache
def ocsp_settings() -> OCSPSettings:
    """Return the validated OCSP settings (computed once per process)."""
    conf = getattr(settings, "KMI_OCSP", {})
    return build_ocsp_settings(conf, redis_url=getattr(settings, "REDIS_URL", ""))
