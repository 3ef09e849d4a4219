"""Small typed helpers that read settings from the environment and fail fast."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """Return the variable ``name`` or ``default``."""
    return os.environ.get(name, default)


def env_bool(name: str, *, default: bool = False) -> bool:
    """Return the variable ``name`` read as a boolean (1/0, true/false, yes/no, on/off)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the variable ``name`` read as an integer, at least ``minimum``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def env_secret(name: str, default: str = "") -> str:
    """Return the secret ``name``, or the contents of the file named by ``name_FILE``."""
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return value if value is not None else default


_RATE = re.compile(r"^\s*([1-9][0-9]{0,9})\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$", re.IGNORECASE)


def env_rate(name: str, default: str) -> str:
    """Return the throttle rate ``name`` (``600/minute``: a positive count per s, m, h or d)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not _RATE.match(raw):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate such as 600/minute (count/second|minute|hour|day)"
        )
    return raw.strip()


def env_log_level(name: str, default: str) -> str:
    """Return the logging level ``name`` (DEBUG, INFO, WARNING, ERROR or CRITICAL)."""
    raw = os.environ.get(name, default).strip().upper()
    if raw not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} or not isinstance(
        logging.getLevelName(raw), int
    ):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return raw


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for error messages: never print secrets)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # not even a URL (a bad port): show only its scheme
        return url.split(":", 1)[0] + "://***" if ":" in url else "***"
    return urlunsplit(parts._replace(netloc=netloc))
