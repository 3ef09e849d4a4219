"""The HTTP repository (RFC 5280 §4.2.1.13, §4.2.2.1; RFC 2585 content types).

Serves what the URLs in every certificate point at: each CA's latest stored CRL (full or one
partition) and its certificate and chain. Nothing is signed here: a CRL that has not been
published yet is a 503 until the scheduler publishes it. Responses carry validators and
caching headers tied to the CRL's dates, answer HEAD and conditional GET, and name a file, so a
person who opens the URL from a browser's certificate viewer gets a sensible download.

When the database is unavailable, CRLs and CA certificates are served from ``KMI_CRL_DIR``
(where every publication also writes them, pki/crl.py), with the same headers; without that
directory the answer is a 503 with Retry-After, never an error page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.db import DatabaseError
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from pki.clock import utcnow
from pki.conf import pki_settings
from pki.crl import pem
from pki.locations import parse_repository_name
from pki.models import CAGeneration, Certificate, CertificateAuthority, CertificateRevocationList
from pki.models.authority import certificate_chain

CRL_DER = "application/pkix-crl"  # RFC 2585 §4
CERT_DER = "application/pkix-cert"  # RFC 2585 §4
CHAIN_PEM = "application/pem-certificate-chain"  # RFC 8555 §9.1
PEM = "application/x-pem-file"
CA_CACHE_SECONDS = 86400

log = logging.getLogger(__name__)

_SHARD_STEM = re.compile(r"^(?P<name>.+)-(?P<shard>[1-9][0-9]{0,3})$")


def _text(status: int, message: str, **headers: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _ca_row(name: str) -> dict[str, Any] | None:
    """The CA row of a repository name (``issuing``, ``issuing.g2``), with the generation asked for."""
    parsed = parse_repository_name(name)
    if parsed is None:
        return None
    found = (
        CertificateAuthority.objects.filter(name=parsed[0])
        .values("id", "name", "crl_shards", "generation", "certificate_id")
        .first()
    )
    if found is None:
        return None
    return {**found, "asked": parsed[1], "label": name}


def _resolve_crl_stem(stem: str) -> tuple[dict[str, Any], int] | None:
    """``issuing`` is CA issuing's full CRL; ``issuing-3`` its partition 3 (an exact CA name wins);
    ``issuing.g2`` and ``issuing.g2-3`` the same for the CA's second generation."""
    ca = _ca_row(stem)
    if ca is not None:
        return ca, 0
    match = _SHARD_STEM.match(stem)
    if match is None:
        return None
    ca = _ca_row(match["name"])
    if ca is None:
        return None
    return ca, int(match["shard"])


def _serve(
    request: HttpRequest,
    *,
    body: bytes | None,
    load: Any,
    size: int | None,
    content_type: str,
    filename: str,
    etag: str,
    last_modified: dt.datetime,
    max_age: int,
    expires: dt.datetime | None,
) -> HttpResponseBase:
    """Answer with validators and caching headers; 304 when the client's copy is current."""
    response = HttpResponse(content_type=content_type)
    response.headers["ETag"] = f'"{etag}"'
    response.headers["Last-Modified"] = http_date(last_modified.timestamp())
    response.headers["Cache-Control"] = f"public, max-age={max(0, max_age)}, no-transform"
    if expires is not None:
        response.headers["Expires"] = http_date(expires.timestamp())
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    conditional = get_conditional_response(
        request,
        etag=response.headers["ETag"],
        last_modified=int(last_modified.timestamp()),
        response=response,
    )
    if conditional is not None and conditional is not response:
        return conditional  # 304 Not Modified (or 412), with the validators copied over
    if request.method == "HEAD" and size is not None:
        response.headers["Content-Length"] = str(size)
        return response
    data = body if body is not None else load()
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(data))
    else:
        response.content = data
    return response


OUTAGE_RETRY_AFTER = "30"


def _stored_file(name: str) -> bytes | None:
    directory = pki_settings().crl_dir
    if directory is None:
        return None
    try:
        return (directory / name).read_bytes()
    except OSError:
        return None


def _database_down(what: str, exc: DatabaseError) -> HttpResponse:
    log.warning("repository: database unavailable serving %s (%s)", what, type(exc).__name__)
    return _text(
        503,
        f"the database is unavailable and no stored copy of {what} exists; try again later",
        Retry_After=OUTAGE_RETRY_AFTER,
    )


def _crl_from_storage(
    request: HttpRequest, stem: str, as_pem: str | None, exc: DatabaseError
) -> HttpResponseBase:
    """The CRL file KMI_CRL_DIR holds, served as from the database (the database is down)."""
    data = _stored_file(f"{stem}.crl")
    if data is None:
        return _database_down(f"CRL {stem}", exc)
    parsed = x509.load_der_x509_crl(data)
    next_update = parsed.next_update_utc or parsed.last_update_utc
    max_age = min(int((next_update - utcnow()).total_seconds()), pki_settings().crl_cache_seconds)
    digest = hashlib.sha256(data).hexdigest()
    return _serve(
        request,
        body=pem(data) if as_pem else data,
        load=None,
        size=None,
        content_type=PEM if as_pem else CRL_DER,
        filename=f"{stem}.crl.pem" if as_pem else f"{stem}.crl",
        etag=f"{digest}.pem" if as_pem else digest,
        last_modified=parsed.last_update_utc,
        max_age=max_age,
        expires=next_update,
    )


def _ca_from_storage(request: HttpRequest, stem: str, *, der: bool, exc: DatabaseError) -> HttpResponseBase:
    """The CA certificate (or chain) KMI_CRL_DIR holds (the database is down)."""
    chain = not der and stem.endswith("-chain")
    name = stem.removesuffix("-chain") if chain else stem
    cert_der = _stored_file(f"{name}.cer")
    data = _stored_file(f"{name}-chain.pem") if chain else cert_der
    if cert_der is None or data is None:
        return _database_down(f"the certificate of CA {name}", exc)
    cert = x509.load_der_x509_certificate(cert_der)
    if not der and not chain:
        data = cert.public_bytes(serialization.Encoding.PEM)
    return _serve(
        request,
        body=data,
        load=None,
        size=len(data),
        content_type=CERT_DER if der else (CHAIN_PEM if chain else PEM),
        filename=f"{name}.cer" if der else f"{stem}.pem",
        etag=cert.fingerprint(hashes.SHA256()).hex() if der else hashlib.sha256(data).hexdigest(),
        last_modified=cert.not_valid_before_utc,
        max_age=CA_CACHE_SECONDS,
        expires=None,
    )


@require_safe
def crl(request: HttpRequest, stem: str, as_pem: str | None = None) -> HttpResponseBase:
    """``/crl/<ca>.crl`` and ``/crl/<ca>-<n>.crl`` (DER), with ``.pem`` appended for PEM."""
    try:
        return _crl(request, stem, as_pem)
    except DatabaseError as exc:
        return _crl_from_storage(request, stem, as_pem, exc)


def _crl(request: HttpRequest, stem: str, as_pem: str | None) -> HttpResponseBase:
    resolved = _resolve_crl_stem(stem)
    if resolved is None:
        return _text(404, f"no CA and no CRL partition named {stem!r}")
    ca, shard = resolved
    latest = (
        CertificateRevocationList.objects.filter(ca_id=ca["id"], generation=ca["asked"], shard=shard)
        .order_by("-crl_number")
        .values("id", "sha256", "this_update", "next_update", size=Length("der"))
        .first()
    )
    if latest is None:
        if ca["asked"] > 1 and not _generation_exists(ca):
            return _text(404, f"CA {ca['name']} has no generation {ca['asked']}")
        if shard and shard > ca["crl_shards"]:
            return _text(404, f"CA {ca['label']} has no CRL partition {shard}")
        return _text(
            503,
            f"no CRL of CA {ca['label']} has been published yet; the scheduler publishes it shortly",
            Retry_After="30",
        )
    now = utcnow()
    until_next = int((latest["next_update"] - now).total_seconds())
    max_age = min(until_next, pki_settings().crl_cache_seconds)

    def load_der() -> bytes:
        value = CertificateRevocationList.objects.filter(pk=latest["id"]).values_list("der", flat=True).get()
        return bytes(value)

    if as_pem:
        return _serve(
            request,
            body=None,
            load=lambda: pem(load_der()),
            size=None,
            content_type=PEM,
            filename=f"{stem}.crl.pem",
            etag=f"{latest['sha256']}.pem",
            last_modified=latest["this_update"],
            max_age=max_age,
            expires=latest["next_update"],
        )
    return _serve(
        request,
        body=None,
        load=load_der,
        size=latest["size"],
        content_type=CRL_DER,
        filename=f"{stem}.crl",
        etag=latest["sha256"],
        last_modified=latest["this_update"],
        max_age=max_age,
        expires=latest["next_update"],
    )


def _generation_exists(ca: dict[str, Any]) -> bool:
    return CAGeneration.objects.filter(ca_id=ca["id"], number=ca["asked"]).exists()


def _generation_certificate(name: str) -> Certificate | None:
    """The certificate of the CA generation a repository name names (``issuing``, ``issuing.g2``).

    The first generation's URL keeps serving the first generation's certificate after a
    rollover: it is the caIssuers URL of every certificate that generation signed.
    """
    ca = _ca_row(name)
    if ca is None or ca["certificate_id"] is None:
        return None
    if ca["asked"] == ca["generation"]:
        return Certificate.objects.filter(pk=ca["certificate_id"]).first()
    row = (
        CAGeneration.objects.filter(ca_id=ca["id"], number=ca["asked"]).select_related("certificate").first()
    )
    return row.certificate if row is not None else None


@require_safe
def ca_certificate(request: HttpRequest, name: str) -> HttpResponseBase:
    """``/ca/<ca>.cer``: the CA generation's certificate, DER (the AIA caIssuers URL)."""
    try:
        return _ca_certificate(request, name)
    except DatabaseError as exc:
        return _ca_from_storage(request, name, der=True, exc=exc)


def _ca_certificate(request: HttpRequest, name: str) -> HttpResponseBase:
    cert = _generation_certificate(name)
    if cert is None:
        return _text(404, f"no CA named {name!r}")
    data = bytes(cert.der)
    return _serve(
        request,
        body=data,
        load=None,
        size=len(data),
        content_type=CERT_DER,
        filename=f"{name}.cer",
        etag=cert.fingerprint_sha256,
        last_modified=cert.not_before,
        max_age=CA_CACHE_SECONDS,
        expires=None,
    )


@require_safe
def ca_pem(request: HttpRequest, stem: str) -> HttpResponseBase:
    """``/ca/<ca>.pem`` (the certificate) and ``/ca/<ca>-chain.pem`` (it and its issuers to the root)."""
    try:
        return _ca_pem(request, stem)
    except DatabaseError as exc:
        return _ca_from_storage(request, stem, der=False, exc=exc)


def _ca_pem(request: HttpRequest, stem: str) -> HttpResponseBase:
    cert = _generation_certificate(stem)
    chain = False
    if cert is None and stem.endswith("-chain"):
        cert = _generation_certificate(stem.removesuffix("-chain"))
        chain = True
    if cert is None:
        return _text(404, f"no CA named {stem.removesuffix('-chain')!r}")
    certs = certificate_chain(cert) if chain else [cert.x509()]
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return _serve(
        request,
        body=data,
        load=None,
        size=len(data),
        content_type=CHAIN_PEM if chain else PEM,
        filename=f"{stem}.pem",
        etag=hashlib.sha256(data).hexdigest(),
        last_modified=cert.not_before,
        max_age=CA_CACHE_SECONDS,
        expires=None,
    )
