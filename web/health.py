"""``/healthz``: the process is up and reaches its database (container health checks use it)."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse


def healthz(request: HttpRequest) -> HttpResponse:
    """200 ``ok`` when a trivial query answers, 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return HttpResponse(f"database unreachable: {exc}\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
