"""One exception handler for the API: domain and DRF errors become RFC 7807 problem documents."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import set_rollback

from pki import exceptions as pki_errors
from pki.transparency.monitor import count_token_error

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://kmi.example/problems/"

# Seconds a client is asked to wait before retrying a call that found no signing worker.
SIGNING_RETRY_AFTER = 5
# ... and one that found the database unavailable.
OUTAGE_RETRY_AFTER = 30

# Domain errors (no HTTP codes in pki/) mapped once, most specific first.
DOMAIN_STATUS: list[tuple[type[pki_errors.PKIError], int, str]] = [
    (pki_errors.SigningUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE, "Signing unavailable"),
    (pki_errors.SigningFailed, status.HTTP_500_INTERNAL_SERVER_ERROR, "Signing failed"),
    (pki_errors.SigningRefused, status.HTTP_403_FORBIDDEN, "Signing refused"),
    (pki_errors.NotFound, status.HTTP_404_NOT_FOUND, "Not found"),
    (pki_errors.SeparationOfDuties, status.HTTP_403_FORBIDDEN, "Separation of duties"),
    (pki_errors.NotAuthorized, status.HTTP_403_FORBIDDEN, "Not authorized"),
    (pki_errors.InvalidCSR, status.HTTP_400_BAD_REQUEST, "Bad CSR"),
    (pki_errors.PolicyViolation, status.HTTP_422_UNPROCESSABLE_ENTITY, "Policy violation"),
    (pki_errors.AlreadyDelivered, status.HTTP_410_GONE, "Already delivered"),
    (pki_errors.CAUnavailable, status.HTTP_409_CONFLICT, "CA unavailable"),
    (pki_errors.InvalidState, status.HTTP_409_CONFLICT, "Invalid state"),
    (pki_errors.ConfigurationError, status.HTTP_503_SERVICE_UNAVAILABLE, "Not configured"),
    (pki_errors.KeyBackendError, status.HTTP_503_SERVICE_UNAVAILABLE, "Key backend unavailable"),
    (pki_errors.AuditChainBroken, status.HTTP_409_CONFLICT, "Audit chain broken"),
    (pki_errors.PKIError, status.HTTP_400_BAD_REQUEST, "PKI error"),
]


def problem(status_code: int, title: str, detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """Build an RFC 7807 problem document."""
    return {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
        **extra,
    }


def _field_errors(detail: Any, path: str = "") -> list[dict[str, str]]:
    """Flatten DRF's nested validation detail into [{field, message, code}]."""
    out: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key) if key != "non_field_errors" else ""
            out.extend(_field_errors(value, f"{path}.{name}" if path and name else (name or path)))
    elif isinstance(detail, list):
        for i, item in enumerate(detail):
            if isinstance(item, dict | list):
                out.extend(_field_errors(item, f"{path}[{i}]"))
            else:
                out.extend(_field_errors(item, path))
    else:
        out.append({"field": path, "message": str(detail), "code": getattr(detail, "code", "invalid")})
    return out


def too_large() -> dict[str, Any]:
    """The problem document of a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (HTTP 413)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    detail = f"the request body is larger than {limit} bytes"
    return problem(413, "Request body too large", detail, "too_large")


def _response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=body["status"], content_type=PROBLEM_JSON, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error the API returns passes through here."""
    response = _handle(exc, context)
    if response is not None and 400 <= response.status_code < 500:
        # A token hitting many 4xx is a threat signal (pki.transparency.monitor): one counter bump.
        prefix = getattr(getattr(context.get("request"), "auth", None), "prefix", None)
        if isinstance(prefix, str):
            count_token_error(token_prefix=prefix)
    return response


def _handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, pki_errors.SigningUnavailable):
        return _signing_unavailable(exc, context)
    if isinstance(exc, pki_errors.PKIError):
        set_rollback()
        for cls, code, title in DOMAIN_STATUS:
            if isinstance(exc, cls):
                return _response(problem(code, title, str(exc), exc.code))
    if isinstance(exc, RequestDataTooBig | DatabaseError):
        return _unavailable_or_too_large(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django's 500 handling (and logging) takes over
    set_rollback()
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)  # Throttled sets it; the stubs do not declare it
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait) + 1)
    code = exc.status_code
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        body = problem(code, "Invalid request", detail, "invalid", errors=errors)
    else:
        detail_text = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        title = str(exc.default_detail).rstrip(".")
        body = problem(code, title, str(detail_text), str(exc.default_code))
    return _response(body, headers or None)


def _unavailable_or_too_large(exc: Exception) -> Response:
    """413 for a body over the limit; 503 with Retry-After when the database is unavailable."""
    if isinstance(exc, RequestDataTooBig):
        return _response(too_large())
    # PostgreSQL is down (or refused): nothing was changed, come back later.
    set_rollback()
    detail = "the database is unavailable; nothing was changed, try again later"
    body = problem(503, "Database unavailable", detail, "database_unavailable")
    return _response(body, {"Retry-After": str(OUTAGE_RETRY_AFTER)})


def _signing_unavailable(exc: pki_errors.SigningUnavailable, context: dict[str, Any]) -> Response:
    """503 with Retry-After; when a request was stored (and stays approved), its URL to come back to."""
    extra: dict[str, Any] = {}
    if exc.request_id is not None:
        extra["request"] = reverse(
            "api:request-detail", kwargs={"pk": exc.request_id}, request=context.get("request")
        )
    body = problem(status.HTTP_503_SERVICE_UNAVAILABLE, "Signing unavailable", str(exc), exc.code, **extra)
    return _response(body, {"Retry-After": str(SIGNING_RETRY_AFTER)})


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for URLs no route matched: a problem document under /api/, HTML elsewhere."""
    if request.path.startswith("/api/"):
        body = problem(404, "Not found", f"no API endpoint at {request.path}", "not_found")
        return JsonResponse(body, status=404, content_type=PROBLEM_JSON)
    return defaults.page_not_found(request, exception)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (a SuspiciousOperation such as an over-large body): a problem document under /api/."""
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            body = too_large()
        else:
            reason = str(exception) if isinstance(exception, SuspiciousOperation) else ""
            body = problem(400, "Bad request", reason or "the request was refused", "bad_request")
        return JsonResponse(body, status=body["status"], content_type=PROBLEM_JSON)
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 403 outside DRF (CSRF middleware): a problem document under /api/."""
    if request.path.startswith("/api/"):
        body = problem(403, "Forbidden", str(exception) or "forbidden", "permission_denied")
        return JsonResponse(body, status=403, content_type=PROBLEM_JSON)
    return defaults.permission_denied(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Django's 500: a problem document under /api/ (the error itself is logged by Django)."""
    if request.path.startswith("/api/"):
        body = problem(500, "Internal error", "the server failed; the error was logged", "internal")
        return JsonResponse(body, status=500, content_type=PROBLEM_JSON)
    return defaults.server_error(request)
