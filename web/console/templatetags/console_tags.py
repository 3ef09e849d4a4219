"""Template filters of the console."""

from __future__ import annotations

import datetime as dt

from django import template

from pki.models import Certificate

register = template.Library()


@register.filter
def status_at(cert: Certificate, now: dt.datetime) -> str:
    """``valid``, ``expired``, ``revoked`` or ``not_yet_valid`` at ``now``."""
    return cert.status(now)
