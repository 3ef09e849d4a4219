"""Subject and SAN parsing and validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from pki.exceptions import NameNotAllowed, PolicyViolation

# \Z, not $: "$" also matches before a trailing newline, which would let "name\n" through.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+\Z")


# The string types an attribute may be written in. RFC 5280 §4.1.2.6: new DirectoryStrings are
# PrintableString or UTF8String (TeletexString, UniversalString and BMPString only for old names).
_DIRECTORY = frozenset({_ASN1Type.PrintableString, _ASN1Type.UTF8String})
_PRINTABLE = frozenset({_ASN1Type.PrintableString})
_IA5 = frozenset({_ASN1Type.IA5String})


@dataclass(frozen=True)
class AttributeRule:
    """What X.520 / RFC 5280 Appendix A allow for one subject attribute type."""

    label: str
    upper_bound: int  # characters (ub-… of X.520 and RFC 5280 Appendix A.1)
    string_types: frozenset[_ASN1Type]
    lower_bound: int = 1


# Every subject attribute KMI issues, with its upper bound and string types. Anything else in a
# subject is refused: an attribute KMI cannot check does not go into a certificate it signs.
SUBJECT_ATTRIBUTES: dict[ObjectIdentifier, AttributeRule] = {
    NameOID.COMMON_NAME: AttributeRule("CN", 64, _DIRECTORY),  # ub-common-name
    NameOID.SURNAME: AttributeRule("SN", 32768, _DIRECTORY),  # ub-name
    NameOID.GIVEN_NAME: AttributeRule("GN", 32768, _DIRECTORY),  # ub-name
    NameOID.INITIALS: AttributeRule("initials", 32768, _DIRECTORY),  # ub-name
    NameOID.GENERATION_QUALIFIER: AttributeRule("generationQualifier", 32768, _DIRECTORY),
    NameOID.PSEUDONYM: AttributeRule("pseudonym", 128, _DIRECTORY),  # ub-pseudonym
    NameOID.TITLE: AttributeRule("title", 64, _DIRECTORY),  # ub-title
    NameOID.SERIAL_NUMBER: AttributeRule("serialNumber", 64, _PRINTABLE),  # ub-serial-number
    NameOID.DN_QUALIFIER: AttributeRule("dnQualifier", 64, _PRINTABLE),
    NameOID.COUNTRY_NAME: AttributeRule("C", 2, _PRINTABLE, lower_bound=2),  # ub-country-name-alpha
    NameOID.STATE_OR_PROVINCE_NAME: AttributeRule("ST", 128, _DIRECTORY),  # ub-state-name
    NameOID.LOCALITY_NAME: AttributeRule("L", 128, _DIRECTORY),  # ub-locality-name
    NameOID.STREET_ADDRESS: AttributeRule("street", 128, _DIRECTORY),  # X.520 ub-street-address
    NameOID.POSTAL_CODE: AttributeRule("postalCode", 40, _DIRECTORY),  # X.520 ub-postal-code
    NameOID.ORGANIZATION_NAME: AttributeRule("O", 64, _DIRECTORY),  # ub-organization-name
    NameOID.ORGANIZATIONAL_UNIT_NAME: AttributeRule("OU", 64, _DIRECTORY),  # ub-organizational-unit-name
    NameOID.ORGANIZATION_IDENTIFIER: AttributeRule("organizationIdentifier", 128, _DIRECTORY),
    NameOID.BUSINESS_CATEGORY: AttributeRule("businessCategory", 128, _DIRECTORY),
    NameOID.JURISDICTION_COUNTRY_NAME: AttributeRule("jurisdictionC", 2, _PRINTABLE, lower_bound=2),
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: AttributeRule("jurisdictionST", 128, _DIRECTORY),
    NameOID.JURISDICTION_LOCALITY_NAME: AttributeRule("jurisdictionL", 128, _DIRECTORY),
    NameOID.USER_ID: AttributeRule("UID", 256, _DIRECTORY),  # RFC 4519 uid (X.520 ub-name-class)
    NameOID.DOMAIN_COMPONENT: AttributeRule("DC", 63, _IA5),  # RFC 4519: one DNS label
    NameOID.EMAIL_ADDRESS: AttributeRule("emailAddress", 255, _IA5),  # ub-emailaddress-length
}

# X.680 §41.4: PrintableString's repertoire.
_PRINTABLE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _control_character(value: str) -> str | None:
    """The first C0/C1 control character (NUL included) or lone surrogate in ``value``, if any."""
    found = _CONTROL_CHARACTER.search(value)
    return found.group() if found else None


def check_subject(name: x509.Name) -> x509.Name:
    """Check every attribute of ``name`` against its X.520 upper bound and string type.

    Raises ``PolicyViolation`` naming the attribute and the rule it breaks; returns ``name``.
    """
    for rdn in name.rdns:
        seen: set[ObjectIdentifier] = set()
        for attr in rdn:
            rule = SUBJECT_ATTRIBUTES.get(attr.oid)
            label = rule.label if rule is not None else attr.oid.dotted_string
            if rule is None:
                raise PolicyViolation(f"subject attribute {label} is not one KMI issues")
            if attr.oid in seen:
                raise PolicyViolation(f"subject RDN repeats attribute {label}")
            seen.add(attr.oid)
            value = attr.value
            if not isinstance(value, str):
                raise PolicyViolation(f"subject attribute {label} is not a string")
            bad = _control_character(value)
            if bad is not None:
                raise PolicyViolation(
                    f"subject attribute {label} contains the control character U+{ord(bad):04X}"
                )
            if not rule.lower_bound <= len(value) <= rule.upper_bound:
                bound = (
                    f"exactly {rule.upper_bound}"
                    if rule.lower_bound == rule.upper_bound
                    else f"{rule.lower_bound} to {rule.upper_bound}"
                )
                raise PolicyViolation(
                    f"subject attribute {label} is {len(value)} characters; X.520 allows {bound}"
                )
            string_type = attr._type
            if string_type not in rule.string_types:
                allowed = " or ".join(sorted(t.name for t in rule.string_types))
                raise PolicyViolation(
                    f"subject attribute {label} is a {string_type.name}; it must be {allowed}"
                )
            if string_type == _ASN1Type.PrintableString and not set(value) <= _PRINTABLE_CHARS:
                raise PolicyViolation(f"subject attribute {label} has characters PrintableString cannot hold")
            if string_type == _ASN1Type.IA5String and not value.isascii():
                raise PolicyViolation(f"subject attribute {label} has characters IA5String cannot hold")
            if rule.label in {"C", "jurisdictionC"} and not (value.isascii() and value.isupper()):
                raise PolicyViolation(f"subject attribute {label} must be an ISO 3166 alpha-2 code")
    return name


def parse_subject(text: str) -> x509.Name:
    """Parse an RFC 4514 subject such as ``CN=KMI Test Root,O=KMI`` and check its attributes."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise PolicyViolation(f"subject {text!r} is not an RFC 4514 name: {exc}") from None
    if not list(name):
        raise PolicyViolation("subject must not be empty")
    return check_subject(name)


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
    if any(c.isspace() for c in uri) or _control_character(uri) is not None or not uri.isascii():
        raise NameNotAllowed(f"URI {uri!r} contains white space, control or non-ASCII characters")
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


def certificate_sans(cert: x509.Certificate) -> tuple[SAN, ...]:
    """The SANs of a certificate (none without a subjectAltName extension)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san_from_general_name(gn) for gn in ext)


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
