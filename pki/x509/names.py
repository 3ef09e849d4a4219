"""Subject and SAN parsing and validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from pki.exceptions import NameNotAllowed, PolicyViolation

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+$")


def parse_subject(text: str) -> x509.Name:
    """Parse an RFC 4514 subject such as ``CN=KMI Test Root,O=KMI``."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise PolicyViolation(f"subject {text!r} is not an RFC 4514 name: {exc}") from None
    if not list(name):
        raise PolicyViolation("subject must not be empty")
    return name


def validate_dns_name(name: str, *, allow_wildcard: bool = True) -> str:
    """Return ``name`` if it is a valid (A-label) DNS name, optionally with a leading ``*.``."""
    if name != name.lower():
        raise NameNotAllowed(f"DNS name {name!r} must be lower case")
    if len(name) > 253 or not name:
        raise NameNotAllowed(f"DNS name {name!r} has a bad length")
    labels = name.split(".")
    if labels[0] == "*":
        if not allow_wildcard:
            raise NameNotAllowed(f"wildcard {name!r} is not allowed here")
        if len(labels) < 3:
            raise NameNotAllowed(f"wildcard {name!r} must cover at least two labels")
        labels = labels[1:]
    for label in labels:
        if not _LABEL.match(label):
            raise NameNotAllowed(f"DNS name {name!r} has an invalid label {label!r}")
    if labels[-1].isdigit():
        raise NameNotAllowed(f"DNS name {name!r} looks like an IP address; use an IP SAN")
    return name


def validate_email(address: str) -> str:
    """Return ``address`` if it is a plain RFC 5321 mailbox."""
    if not _EMAIL.match(address) or len(address) > 254:
        raise NameNotAllowed(f"email address {address!r} is not valid")
    return address


def validate_uri(uri: str) -> str:
    """Return ``uri`` if it is an absolute URI with a scheme and an authority."""
    parts = urlsplit(uri)
    if not parts.scheme or not (parts.netloc or parts.scheme in {"urn", "spiffe"} or parts.path):
        raise NameNotAllowed(f"URI {uri!r} is not absolute")
    if any(c.isspace() for c in uri):
        raise NameNotAllowed(f"URI {uri!r} contains white space")
    return uri


@dataclass(frozen=True, order=True)
class SAN:
    """One subject alternative name as ``kind`` (dns, ip, email, uri) and text ``value``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    def general_name(self) -> x509.GeneralName:
        """Return the ``cryptography`` GeneralName."""
        if self.kind == "dns":
            return x509.DNSName(self.value)
        if self.kind == "ip":
            return x509.IPAddress(ipaddress.ip_address(self.value))
        if self.kind == "email":
            return x509.RFC822Name(self.value)
        return x509.UniformResourceIdentifier(self.value)


def san_from_general_name(gn: x509.GeneralName) -> SAN:
    """Convert and validate a GeneralName from a CSR; other name forms are refused."""
    if isinstance(gn, x509.DNSName):
        return SAN("dns", validate_dns_name(gn.value))
    if isinstance(gn, x509.IPAddress):
        if not isinstance(gn.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise NameNotAllowed("IP SANs must be addresses, not networks")
        return SAN("ip", str(gn.value))
    if isinstance(gn, x509.RFC822Name):
        return SAN("email", validate_email(gn.value))
    if isinstance(gn, x509.UniformResourceIdentifier):
        return SAN("uri", validate_uri(gn.value))
    raise NameNotAllowed(f"SAN type {type(gn).__name__} is not supported")


def parse_san(text: str) -> SAN:
    """Parse ``dns:www.example.test``, ``ip:10.0.0.1``, ``email:a@b.test`` or ``uri:https://…``."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        kind, value = "dns", text
    if kind == "dns":
        return SAN("dns", validate_dns_name(value.strip()))
    if kind == "ip":
        try:
            return SAN("ip", str(ipaddress.ip_address(value.strip())))
        except ValueError:
            raise NameNotAllowed(f"{value!r} is not an IP address") from None
    if kind == "email":
        return SAN("email", validate_email(value.strip()))
    if kind == "uri":
        return SAN("uri", validate_uri(value.strip()))
    raise NameNotAllowed(f"unknown SAN type {kind!r} (use dns:, ip:, email: or uri:)")


def looks_like_dns_name(value: str) -> bool:
    """True when a subject CN could be copied into the SAN as a DNS name."""
    try:
        validate_dns_name(value.lower())
    except NameNotAllowed:
        return False
    return "." in value
