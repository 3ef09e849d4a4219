"""``/healthz``: the process is up and reaches its database (container health checks use it).

``/healthz?detail=1`` answers JSON: the database, and, in a process that signs, the key backend
of every CA (an HSM this process cannot reach, or no KEK, fails the check with 503).
"""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from pki.keys.health import key_backend_status
from pki.signing import signs_here


def healthz(request: HttpRequest) -> HttpResponse:
    """200 ``ok`` when a trivial query answers, 503 otherwise; JSON details with ``?detail=1``."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        if request.GET.get("detail"):
            return JsonResponse({"ok": False, "database": f"unreachable: {type(exc).__name__}"}, status=503)
        return HttpResponse(f"database unreachable: {exc}\n", status=503, content_type="text/plain")
    if not request.GET.get("detail"):
        return HttpResponse("ok\n", content_type="text/plain")
    body: dict[str, object] = {"database": "ok"}
    ok = True
    if signs_here():
        statuses = key_backend_status()
        body["key_backends"] = [
            {"ca": s.ca, "backend": s.backend, "ok": s.ok, **({"problem": s.problem} if s.problem else {})}
            for s in statuses
        ]
        ok = all(s.ok for s in statuses)
    else:
        body["key_backends"] = "checked on the signing workers (KMI_SIGNING=worker)"
    body["ok"] = ok
    return JsonResponse(body, status=200 if ok else 503)
