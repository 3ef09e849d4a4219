"""Helpers for the ACME tests: a small DNS server, an http-01 responder, a hand-built JWS client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dnslib import QTYPE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from pki.acme.jws import jwk_of, jwk_thumbprint


def port(offset: int) -> int:
    """A port of this helper's range 18500-18599, distinct per pytest-xdist worker (10 each).

    Offsets: 0-2 HTTP binding tests (DNS, http-01, tls-alpn-01), 3-4 certbot, 5-6 acme-client.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    if index > 9 or not 0 <= offset <= 9:
        raise RuntimeError("ACME tests have ports for at most 10 xdist workers")
    return 18500 + 10 * index + offset


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- DNS ----------------------------------------------------------------------------------------


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: LocalDNS) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if qtype == "TXT":
            for value in self.zone.txt_values(qname):
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=0))
        elif qtype == "A" and qname.endswith(self.zone.suffix):
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.zone.address), ttl=0))
        return reply


@dataclass
class LocalDNS:
    """A UDP DNS server in a thread: A records for every name under ``suffix``, TXT records on demand."""

    port: int
    suffix: str = "example.test"
    address: str = "127.0.0.1"
    txt: dict[str, list[str]] = field(default_factory=dict)
    zone_dir: Path | None = None  # hook scripts of other processes add TXT records as files here
    server: Any = None

    def txt_values(self, name: str) -> list[str]:
        values = list(self.txt.get(name, []))
        if self.zone_dir is not None and (self.zone_dir / name).is_file():
            values += (self.zone_dir / name).read_text().split()
        return values

    def start(self) -> LocalDNS:
        self.server = DNSServer(_Resolver(self), port=self.port, address="127.0.0.1", logger=_QuietLogger())
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.server.server.server_close()


class _QuietLogger:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


# --- http-01 responder -------------------------------------------------------------------------


class Http01Responder:
    """Serves ``/.well-known/acme-challenge/<token>`` from a dict, in a thread."""

    def __init__(self, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.redirect: str | None = None
        tokens = self.tokens
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if responder.redirect:
                    self.send_response(302)
                    self.send_header("Location", responder.redirect)
                    self.end_headers()
                    return
                token = self.path.rsplit("/", 1)[-1]
                body = tokens.get(token)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Http01Responder:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- hand-built JWS client ---------------------------------------------------------------------


def sign(key: Any, alg: str, data: bytes) -> bytes:
    """Sign ``data`` as a JWS would (ES* as raw r||s)."""
    if alg == "none":
        return b""
    if alg == "RS512":
        return b"\0" * 256
    if alg.startswith("HS"):
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(data)
        return mac.finalize()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(
            key.sign(data, ec.ECDSA(hashes.SHA256() if size == 32 else hashes.SHA384()))
        )
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise TypeError(key)


def default_alg(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES256" if key.curve.key_size == 256 else "ES384"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return "EdDSA"


def jws(
    key: Any,
    payload: dict[str, Any] | bytes | None,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
    alg: str | None = None,
    extra: dict[str, Any] | None = None,
    with_jwk: bool | None = None,
) -> dict[str, str]:
    """Build a flattened JWS; ``payload=None`` is POST-as-GET."""
    alg = alg or default_alg(key)
    header: dict[str, Any] = {"alg": alg, "url": url}
    if nonce is not None:
        header["nonce"] = nonce
    if kid is not None:
        header["kid"] = kid
    if with_jwk or (with_jwk is None and kid is None):
        header["jwk"] = jwk_of(key.public_key())
    header.update(extra or {})
    protected = b64u(json.dumps(header).encode())
    if payload is None:
        body = ""
    elif isinstance(payload, bytes):
        body = b64u(payload)
    else:
        body = b64u(json.dumps(payload).encode())
    signature = sign(key, alg, f"{protected}.{body}".encode())
    return {"protected": protected, "payload": body, "signature": b64u(signature)}


def thumbprint(key: Any) -> str:
    return jwk_thumbprint(jwk_of(key.public_key()))


def key_authorization(token: str, key: Any) -> str:
    return f"{token}.{thumbprint(key)}"


def dns01_txt(token: str, key: Any) -> str:
    return b64u(hashlib.sha256(key_authorization(token, key).encode()).digest())


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str:
        return str(self.json().get("type", "")).removeprefix("urn:ietf:params:acme:error:")


class AcmeTestClient:
    """Drives an ACME endpoint with hand-built JWS over Django's test client."""

    def __init__(self, django_client: Any, directory_url: str, key: Any) -> None:
        self.http = django_client
        self.key = key
        self.kid: str | None = None
        self.directory = self.get(directory_url).json()

    def _path(self, url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _wrap(self, response: Any) -> Response:
        return Response(response.status_code, dict(response.headers.items()), response.content)

    def get(self, url: str) -> Response:
        return self._wrap(self.http.get(self._path(url)))

    def nonce(self) -> str:
        response = self.http.head(self._path(self.directory["newNonce"]))
        return str(response.headers["Replay-Nonce"])

    def post_raw(self, url: str, body: bytes | str, content_type: str = "application/jose+json") -> Response:
        return self._wrap(self.http.post(self._path(url), data=body, content_type=content_type))

    def post(self, url: str, payload: dict[str, Any] | bytes | None, **kwargs: Any) -> Response:
        key = kwargs.pop("key", self.key)
        kid = kwargs.pop("kid", self.kid)
        nonce = kwargs.pop("nonce", None) or self.nonce()
        body = jws(key, payload, url=url, nonce=nonce, kid=kid, **kwargs)
        return self.post_raw(url, json.dumps(body))

    def register(self, **payload: Any) -> Response:
        response = self.post(
            self.directory["newAccount"], {"termsOfServiceAgreed": True, **payload}, kid=None
        )
        if response.status in (200, 201):
            self.kid = response.headers["Location"]
        return response

    def eab(self, key_id: str, hmac_key: str, *, url: str | None = None) -> dict[str, str]:
        """An external account binding JWS (RFC 8555 §7.3.4) over this client's key."""
        secret = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))
        protected = b64u(
            json.dumps({"alg": "HS256", "kid": key_id, "url": url or self.directory["newAccount"]}).encode()
        )
        payload = b64u(json.dumps(jwk_of(self.key.public_key())).encode())
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(f"{protected}.{payload}".encode())
        return {"protected": protected, "payload": payload, "signature": b64u(mac.finalize())}
