"""The one clock of the domain: every time-dependent function takes ``now`` or calls ``utcnow``."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime (frozen by time-machine in tests)."""
    return dt.datetime.now(tz=dt.UTC)


def resolve(now: dt.datetime | None) -> dt.datetime:
    """Return ``now`` if given (it must be aware), else the clock's current time."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(dt.UTC)
