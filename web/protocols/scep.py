"""SCEP over HTTP (RFC 8894 §4): ``/scep/<label>?operation=...`` (GET, and POST for PKIOperation).

Every pkiMessage gets a CertRep, failures included (``pki.scep.service``); a body that is no
pkiMessage at all gets 400, an outage 503: never a 500.
"""

from __future__ import annotations

import base64
import binascii
import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from pki import exceptions as errors
from pki.models.device import ScepLabel
from pki.scep import messages, service
from pki.scep.labels import enabled_label

log = logging.getLogger(__name__)

PKI_MESSAGE = "application/x-pki-message"
CA_RA_CERT = "application/x-x509-ca-ra-cert"


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message.rstrip() + "\n", status=status, content_type="text/plain; charset=utf-8")


def _message(request: HttpRequest) -> bytes:
    if request.method == "POST":
        return request.body
    text = request.GET.get("message", "")
    try:
        # RFC 8894 §4.3: base64 in the query; some clients leave "+" unescaped (read as " ").
        return base64.b64decode(text.replace(" ", "+").encode() + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise messages.Unreadable("the message parameter is not base64") from None


def _answer(request: HttpRequest, label: ScepLabel, operation: str) -> HttpResponse:
    if operation == "GetCACaps":
        return HttpResponse(service.ca_caps(), content_type="text/plain")
    if operation == "GetCACert":
        return HttpResponse(service.ca_certificates(label), content_type=CA_RA_CERT)
    if operation == "PKIOperation":
        reply = service.answer_pki_operation(label=label, body=_message(request))
        return HttpResponse(reply, content_type=PKI_MESSAGE)
    return _text(400, f"unknown operation {operation!r}")


@csrf_exempt
def scep_view(request: HttpRequest, label: str) -> HttpResponse:
    """Dispatch one SCEP operation of ``label``."""
    operation = request.GET.get("operation", "")
    if request.method not in ("GET", "POST") or (request.method == "POST" and operation != "PKIOperation"):
        return _text(405, "SCEP takes GET, and POST for PKIOperation")
    try:
        row = enabled_label(name=label)
        if row is None:
            return _text(404, f"no SCEP label {label!r}")
        return _answer(request, row, operation)
    except messages.Unreadable as exc:
        return _text(400, f"not a SCEP pkiMessage: {exc}")
    except (errors.PKIError, DatabaseError, RedisError) as exc:
        # Outages (the CA, its key backend, the database): the client retries later.
        log.warning("SCEP %s: %s: %s", label, type(exc).__name__, exc)
        response = _text(503, "KMI cannot answer now; retry later")
        response["Retry-After"] = "30"
        return response
