"""EST over HTTPS (RFC 7030): ``/.well-known/est/[<label>/]<operation>``.

Bodies are base64 DER (``Content-Transfer-Encoding: base64``): ``application/pkcs10`` in,
``application/pkcs7-mime; smime-type=certs-only`` out. A device authenticates with HTTP Basic
(an enrollment code: user = code id, password = code) or a TLS client certificate (see
``web.protocols.devices.client_certificate``). Domain errors become HTTP statuses here, and only here.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Callable
from functools import wraps

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from pki import exceptions as errors
from pki.conf import pki_settings
from pki.est import enrollment as est
from pki.est.labels import OPERATIONS
from pki.models.device import EstLabel
from pki.x509.der import certs_only
from web.protocols.devices import ENVIRON_TLS_UNIQUE, client_certificate, device_settings

log = logging.getLogger(__name__)

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
REALM = 'Basic realm="KMI EST", charset="UTF-8"'
_B64_LINE = 64

# The one mapping of domain errors to EST statuses (RFC 7030 §4.2.3: 4xx with a text body).
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (errors.NotAuthenticated, 401),
    (errors.InvalidCSR, 400),
    (errors.NotFound, 404),
    (errors.SigningUnavailable, 503),
    (errors.CAUnavailable, 503),
    (errors.KeyBackendError, 503),
    (errors.ConfigurationError, 503),
    (errors.PolicyViolation, 403),
    (errors.InvalidState, 409),
    (errors.PKIError, 400),
)


def _text(status: int, message: str, **headers: str) -> HttpResponse:
    response = HttpResponse(message.rstrip() + "\n", status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _b64(data: bytes) -> bytes:
    text = base64.b64encode(data)
    # LF line ends: what `base64 -d` (the usual smoke test) reads; CR would be "invalid input".
    return b"\n".join(text[i : i + _B64_LINE] for i in range(0, len(text), _B64_LINE)) + b"\n"


def _base64_response(data: bytes, content_type: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(_b64(data), status=status, content_type=content_type)
    response["Content-Transfer-Encoding"] = "base64"
    return response


def _certs_only(certs: list[x509.Certificate]) -> bytes:
    return certs_only([c.public_bytes(serialization.Encoding.DER) for c in certs])


def _body(request: HttpRequest) -> bytes:
    """The request body: base64 DER as the RFC says (PEM and raw DER are taken too)."""
    raw = request.body
    if raw.lstrip().startswith(b"-----BEGIN") or raw[:1] == b"\x30":
        return raw
    try:
        return base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidCSR("the body is not base64 (RFC 7030 §4.2.1: base64-encoded DER)") from None


def _label(name: str | None) -> EstLabel:
    qs = EstLabel.objects.select_related("ca", "ca__certificate", "ca__key", "profile")
    label = qs.filter(is_default=True).first() if name is None else qs.filter(name=name).first()
    if label is None or not label.enabled:
        raise errors.NotFound(
            "no such EST label" if name else "no default EST label: use /.well-known/est/<label>/"
        )
    return label


def _device(request: HttpRequest, name: str | None, *, renewal: bool = False) -> est.Device:
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    if auth[:6].lower() == "basic " and not renewal:
        try:
            user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, ValueError):
            raise errors.NotAuthenticated("malformed Basic credentials") from None
        try:
            return est.authenticate_code(label_name=name, code_id=user, secret=password)
        except errors.NotAuthenticated:
            _label(name)  # an unknown label is 404, not 401
            raise
    label = _label(name)
    der = client_certificate(request)
    if der is not None:
        return est.authenticate_certificate(label=label, der=der, renewal=renewal)
    if renewal:
        raise errors.NotAuthenticated(
            "re-enrollment needs the certificate being renewed as TLS client certificate"
        )
    raise errors.NotAuthenticated(
        "authenticate with an enrollment code (HTTP Basic) or a TLS client certificate"
    )


def _tls_unique(request: HttpRequest) -> bytes | None:
    value = request.META.get(ENVIRON_TLS_UNIQUE)
    return value if isinstance(value, bytes) else None


def _pending(request_id: int) -> HttpResponse:
    # RFC 7030 §4.2.3: 202 with Retry-After; the device repeats the same request later.
    seconds = device_settings().retry_after
    return _text(
        202,
        f"request {request_id} waits for an operator's approval; repeat it after {seconds} s",
        Retry_After=str(seconds),
    )


def _cacerts(request: HttpRequest, name: str | None) -> HttpResponse:
    return _base64_response(_certs_only(est.ca_certificates(_label(name))), "application/pkcs7-mime")


def _simpleenroll(request: HttpRequest, name: str | None) -> HttpResponse:
    device = _device(request, name)
    done = est.simple_enroll(device=device, csr=_body(request), tls_unique=_tls_unique(request))
    if done.certificate is None:
        return _pending(done.request.pk)
    return _base64_response(certs_only([bytes(done.certificate.der)]), CERTS_ONLY)


def _simplereenroll(request: HttpRequest, name: str | None) -> HttpResponse:
    device = _device(request, name, renewal=True)
    renewal = est.simple_reenroll(device=device, csr=_body(request), tls_unique=_tls_unique(request))
    if renewal.certificate is None:
        assert renewal.request is not None
        return _pending(renewal.request.pk)
    return _base64_response(certs_only([bytes(renewal.certificate.der)]), CERTS_ONLY)


def _csrattrs(request: HttpRequest, name: str | None) -> HttpResponse:
    return _base64_response(est.csr_attributes(_label(name)), "application/csrattrs")


def _serverkeygen(request: HttpRequest, name: str | None) -> HttpResponse:
    if not request.is_secure() and client_certificate(request) is None:
        # RFC 7030 §4.4.2: an unencrypted key travels only inside TLS.
        raise errors.PolicyViolation("serverkeygen returns the private key only over TLS")
    device = _device(request, name)
    made = est.server_keygen(device=device, csr=_body(request))
    done = made.enrollment
    if done.certificate is None:
        return _pending(done.request.pk)
    boundary = f"est-{secrets.token_hex(12)}"
    parts = [
        ("application/pkcs8", made.pkcs8_der()),
        (CERTS_ONLY, certs_only([bytes(done.certificate.der)])),
    ]
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + _b64(data)
        for ctype, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    response = HttpResponse(body, content_type=f"multipart/mixed; boundary={boundary}")
    response["Cache-Control"] = "no-store"
    return response


Handler = Callable[[HttpRequest, str | None], HttpResponse]
_OPERATIONS: dict[str, tuple[str, Handler]] = {
    "cacerts": ("GET", _cacerts),
    "csrattrs": ("GET", _csrattrs),
    "simpleenroll": ("POST", _simpleenroll),
    "simplereenroll": ("POST", _simplereenroll),
    "serverkeygen": ("POST", _serverkeygen),
}


def _guarded(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: str, **kwargs: str) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except errors.PKIError as exc:
            status = next(code for kind, code in _STATUS if isinstance(exc, kind))
            if status == 401:
                return _text(401, str(exc), WWW_Authenticate=REALM)
            if status == 503:
                return _text(503, str(exc), Retry_After="30")
            return _text(status, str(exc))
        except (DatabaseError, RedisError) as exc:
            log.warning("EST: %s unavailable: %s", type(exc).__name__, exc)
            return _text(503, "a service KMI needs is unavailable; retry later", Retry_After="30")

    return wrapper


@csrf_exempt
@_guarded
def est_view(request: HttpRequest, operation: str, label: str | None = None) -> HttpResponse:
    """Dispatch one EST operation (RFC 7030 §3.2.2) of the default label or of ``label``."""
    if operation not in _OPERATIONS:
        answer = 501 if operation in OPERATIONS else 404
        return _text(answer, f"EST operation {operation!r} is not offered")
    method, handler = _OPERATIONS[operation]
    if request.method != method:
        return _text(405, f"{operation} takes {method}", Allow=method)
    if method == "POST" and len(request.body) > pki_settings().max_csr_bytes * 2:
        return _text(413, "request too large")
    return handler(request, label)
