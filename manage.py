#!/usr/bin/env python
"""Django's command-line utility for KMI."""

import os
import sys


def main() -> None:
    """Run administrative tasks; an unreachable database is one line on stderr, not a traceback."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    try:
        execute_from_command_line(sys.argv)
    except DatabaseError as exc:
        if not _unavailable(exc):
            raise
        reason = " ".join(str(exc).split())[:200]
        sys.stderr.write(f"CommandError: the database is unavailable ({type(exc).__name__}: {reason})\n")
        sys.exit(1)


def _unavailable(exc: BaseException) -> bool:
    """True for a database that cannot be reached (not for an error in a query that ran)."""
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


if __name__ == "__main__":
    main()
