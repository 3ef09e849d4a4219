"""Backends are chosen by alias in settings and loaded with ``import_string``."""

from __future__ import annotations

import functools
from typing import cast

from django.utils.module_loading import import_string

from pki.conf import pki_settings
from pki.exceptions import ConfigurationError
from pki.keys.base import KeyBackend


def get_backend(alias: str | None = None) -> KeyBackend:
    """Return the (per-process) backend configured under ``alias`` (default backend if None)."""
    return _backend(alias or pki_settings().default_key_backend)


# Keyed by the resolved alias, so get_backend() and get_backend("encrypted") share one instance
# (and one key cache, which destroy() must be able to empty).
@functools.cache
def _backend(name: str) -> KeyBackend:
    conf = pki_settings()
    try:
        spec = conf.key_backends[name]
    except KeyError:
        raise ConfigurationError(f"no key backend named {name!r} is configured") from None
    cls = import_string(spec.path)
    return cast(KeyBackend, cls(alias=name, **dict(spec.options)))


def reset() -> None:
    """Forget the loaded backends (after settings change in tests)."""
    _backend.cache_clear()
