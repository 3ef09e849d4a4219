"""Writing the database as the review's attacker: a role that can switch row triggers off.

KMI's triggers (migration 0017) refuse UPDATE/DELETE of audit rows and DELETE of certificates for
every role; a superuser or the tables' owner can still bypass them (``session_replication_role``
is superuser-only), which is what a test of tamper *detection* needs. The application role of a
deployment cannot (docs/runbooks/database-roles.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def triggers_off() -> Iterator[None]:
    """Run the block with this connection's row triggers switched off."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")


def owner_sql(statement: str, params: list[object] | None = None) -> None:
    """Execute one statement with the row triggers off."""
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(statement, params or [])
