"""Challenge checks over the network: http-01 and dns-01 (RFC 8555 §8.3, §8.4), tls-alpn-01 (RFC 8737).

Each check raises ``ValidationFailed`` with an RFC 8555 error type (connection, dns,
incorrectResponse, tls, unauthorized). Every check has a timeout; http-01 reads at most a few
kilobytes and follows redirects only to http on the configured port or https on 443.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

import dns.exception
import dns.nameserver
import dns.resolver
from cryptography import x509

from pki.profiles import name_matches
from pki.x509.names import SAN

from .conf import AcmeSettings
from .jws import b64u_encode

ACME_TLS_ALPN = "acme-tls/1"
# RFC 8737 §3: id-pe-acmeIdentifier.
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
MAX_REDIRECTS = 10


class ValidationFailed(Exception):
    """A challenge did not validate; ``code`` is an RFC 8555 error type."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _resolver(conf: AcmeSettings) -> dns.resolver.Resolver:
    if conf.dns_resolvers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in conf.dns_resolvers
        ]
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = conf.validation_timeout
    resolver.timeout = conf.validation_timeout
    resolver.cache = None
    return resolver


def resolve_addresses(name: str, conf: AcmeSettings) -> list[str]:
    """Addresses of ``name`` (an IP literal resolves to itself), with the configured resolver."""
    try:
        return [str(ipaddress.ip_address(name))]
    except ValueError:
        pass
    # Static overrides first (KMI_ACME_HOSTS), like /etc/hosts for the validator alone.
    pinned = [address for pattern, address in conf.hosts if name_matches(SAN("dns", name), f"dns:{pattern}")]
    if pinned:
        return pinned
    if not conf.dns_resolvers:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ValidationFailed("dns", f"cannot resolve {name}: {exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
    resolver = _resolver(conf)
    addresses: list[str] = []
    for rdtype in ("AAAA", "A"):
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise ValidationFailed("dns", f"DNS lookup of {name} failed: {exc}") from None
        addresses.extend(str(r) for r in answer)
    if not addresses:
        raise ValidationFailed("dns", f"{name} has no A or AAAA record")
    return addresses


def _connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
    raise ValidationFailed("connection", f"cannot connect to port {port} of {', '.join(addresses)}: {last}")


def _host_header(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def check_http01(*, host: str, token: str, key_authorization: str, conf: AcmeSettings) -> None:
    """RFC 8555 §8.3: GET http://host:port/.well-known/acme-challenge/<token> returns the key authz."""
    scheme, port, path = "http", conf.http01_port, f"/.well-known/acme-challenge/{token}"
    for _ in range(MAX_REDIRECTS + 1):
        sock = _connect(resolve_addresses(host, conf), port, conf.validation_timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            # Let's Encrypt's practice: a redirect to https is followed without checking the certificate.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, port, timeout=conf.validation_timeout, context=ctx)
            try:
                conn.sock = ctx.wrap_socket(sock, server_hostname=host if ":" not in host else None)
            except OSError as exc:
                sock.close()
                raise ValidationFailed("tls", f"http-01: TLS with {host} failed: {exc}") from None
        else:
            conn = http.client.HTTPConnection(host, port, timeout=conf.validation_timeout)
            conn.sock = sock
        try:
            conn.request(
                "GET",
                path,
                headers={
                    "Host": _host_header(host, port, 443 if scheme == "https" else 80),
                    "User-Agent": "KMI-ACME-validator",
                    "Accept": "*/*",
                    "Connection": "close",
                },
            )
            response = conn.getresponse()
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.getheader("Location", "")
                    scheme, host, port, path = _follow(location, scheme, host, port, conf)
                    continue
                if response.status != 200:
                    raise ValidationFailed(
                        "unauthorized", f"http-01: {host} answered HTTP {response.status} for {path}"
                    )
                body = response.read(conf.max_http01_bytes + 1)
            finally:
                response.close()
        except (OSError, http.client.HTTPException) as exc:
            raise ValidationFailed("connection", f"http-01: fetching from {host} failed: {exc}") from None
        finally:
            conn.close()
        if len(body) > conf.max_http01_bytes:
            raise ValidationFailed("unauthorized", f"http-01: response exceeds {conf.max_http01_bytes} bytes")
        # RFC 8555 §8.3: the client may add trailing white space.
        if body.rstrip(b" \t\r\n").decode("ascii", "replace") != key_authorization:
            raise ValidationFailed("incorrectResponse", "http-01: the response is not the key authorization")
        return
    raise ValidationFailed("connection", f"http-01: more than {MAX_REDIRECTS} redirects")


def _follow(
    location: str, scheme: str, host: str, port: int, conf: AcmeSettings
) -> tuple[str, str, int, str]:
    """Resolve a redirect; only http on the http-01 port and https on 443 are followed."""
    target = urlsplit(location)
    new_scheme = target.scheme or scheme
    new_host = target.hostname or host
    if new_scheme not in {"http", "https"}:
        raise ValidationFailed("connection", f"http-01: redirect to scheme {new_scheme!r} refused")
    default = conf.http01_port if new_scheme == "http" else 443
    try:
        new_port = target.port or (port if not target.netloc else default)
    except ValueError:
        raise ValidationFailed("connection", "http-01: redirect with a bad port") from None
    allowed = conf.http01_port if new_scheme == "http" else 443
    if new_port != allowed:
        raise ValidationFailed(
            "connection", f"http-01: redirect to {new_scheme} port {new_port} refused (allowed: {allowed})"
        )
    path = target.path or "/"
    if target.query:
        path = f"{path}?{target.query}"
    return new_scheme, new_host, new_port, path


def dns01_value(key_authorization: str) -> str:
    """RFC 8555 §8.4: the TXT value, base64url(SHA-256(key authorization))."""
    return b64u_encode(hashlib.sha256(key_authorization.encode("ascii")).digest())


def check_dns01(*, domain: str, key_authorization: str, conf: AcmeSettings) -> None:
    """RFC 8555 §8.4: a TXT record at ``_acme-challenge.<domain>`` holds the digest."""
    name = f"_acme-challenge.{domain}"
    try:
        answer = _resolver(conf).resolve(name, "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        raise ValidationFailed("dns", f"dns-01: {name} does not exist") from None
    except dns.resolver.NoAnswer:
        raise ValidationFailed("unauthorized", f"dns-01: {name} has no TXT record") from None
    except dns.exception.DNSException as exc:
        raise ValidationFailed("dns", f"dns-01: looking up {name} failed: {exc}") from None
    expected = dns01_value(key_authorization)
    values = {b"".join(r.strings).decode("ascii", "replace") for r in answer}
    if expected not in values:
        raise ValidationFailed("incorrectResponse", f"dns-01: no TXT record at {name} matches")


def check_tls_alpn01(*, kind: str, value: str, key_authorization: str, conf: AcmeSettings) -> None:
    """RFC 8737: a TLS handshake with ALPN acme-tls/1 shows a certificate for exactly the identifier
    with a critical acmeIdentifier extension holding SHA-256 of the key authorization."""
    sni = ipaddress.ip_address(value).reverse_pointer if kind == "ip" else value  # RFC 8738 §6
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    sock = _connect(resolve_addresses(value, conf), conf.tls_alpn01_port, conf.validation_timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            if tls.selected_alpn_protocol() != ACME_TLS_ALPN:
                raise ValidationFailed("tls", "tls-alpn-01: the server did not negotiate acme-tls/1")
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise ValidationFailed("tls", f"tls-alpn-01: handshake with {value} failed: {exc}") from None
    if not der:
        raise ValidationFailed("tls", "tls-alpn-01: no certificate")
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise ValidationFailed(
            "unauthorized", f"tls-alpn-01: certificate lacks an extension: {exc}"
        ) from None
    wanted: x509.GeneralName = (
        x509.IPAddress(ipaddress.ip_address(value)) if kind == "ip" else x509.DNSName(value)
    )
    if sans != [wanted]:
        raise ValidationFailed(
            "unauthorized", "tls-alpn-01: the certificate must name exactly the identifier"
        )
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if not ext.critical or raw != b"\x04\x20" + digest:
        raise ValidationFailed("incorrectResponse", "tls-alpn-01: acmeIdentifier does not match")
