"""Issuance policy: a frozen description of a profile plus the small checks that apply it."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from pki.conf import pki_settings
from pki.exceptions import NameNotAllowed, PolicyViolation, WeakKey
from pki.keys.base import PURE_SIGNATURE_TYPES, key_type_of
from pki.models.key import KeyType
from pki.x509.csr import CheckedCSR
from pki.x509.names import SAN, looks_like_dns_name

if TYPE_CHECKING:
    from pki.models.profile import Profile

KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)

EXTENDED_KEY_USAGES = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}

# Key families a profile lists: "rsa" (any size ≥ min_rsa_bits) or an exact KeyType value.
KEY_FAMILIES = {"rsa", "ec", *KeyType.values}

# RFC 5280 §4.2.1.3 with RFC 8813/8410: usages an EC or EdDSA key cannot have.
_NOT_FOR_EC = {"key_encipherment", "data_encipherment"}
_NOT_FOR_EDDSA = {"key_encipherment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"}


def eku_oid(name: str) -> ObjectIdentifier:
    """Return the OID of a named or dotted extended key usage."""
    if name in EXTENDED_KEY_USAGES:
        return EXTENDED_KEY_USAGES[name]
    if re.fullmatch(r"\d+(\.\d+)+", name):
        return ObjectIdentifier(name)
    raise PolicyViolation(f"unknown extended key usage {name!r}")


def _dns_glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` matches exactly one label, ``**`` one or more labels (``**`` alone: any name)."""
    parts = []
    for label in pattern.lower().split("."):
        if label == "**":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(label).replace(r"\*", r"[^.]*"))
    return re.compile(r"\A" + r"\.".join(parts) + r"\Z")


def name_matches(san: SAN, pattern: str) -> bool:
    """True when ``san`` matches an ``allowed_names`` pattern like ``dns:*.example.test``."""
    kind, _, value = pattern.partition(":")
    if kind != san.kind:
        return False
    if kind == "dns":
        return bool(_dns_glob_regex(value).match(san.value))
    if kind == "ip":
        try:
            return ipaddress.ip_address(san.value) in ipaddress.ip_network(value, strict=False)
        except ValueError:
            return False
    if kind == "email":
        return fnmatch.fnmatchcase(san.value.lower(), value.lower())
    return fnmatch.fnmatchcase(san.value, value)


# Distinct reviewers a profile may ask for (separation of duties, not a quorum of the whole staff).
MAX_APPROVALS = 5

# An ``allowed_names`` entry standing for the names the operator allows (KMI_ALLOWED_DOMAINS);
# the seeded profiles carry it instead of allowing every name.
OPERATOR_NAMES = "$KMI_ALLOWED_DOMAINS"

# Unset KMI_ALLOWED_DOMAINS: special-use names (RFC 6761, RFC 6762, RFC 8375, the .internal
# TLD) and private addresses (RFC 1918, loopback, RFC 4193 unique local) only.
SPECIAL_USE_DOMAINS = ("test", "internal", "local", "home.arpa", "localhost")
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7", "::1/128")


def operator_name_patterns(allowed: Sequence[str]) -> tuple[str, ...]:
    """The ``dns:``/``ip:`` patterns ``OPERATOR_NAMES`` stands for, given KMI_ALLOWED_DOMAINS."""
    patterns: list[str] = []
    if not allowed:
        patterns += [f"dns:**.{d}" for d in SPECIAL_USE_DOMAINS] + ["dns:localhost"]
        return (*patterns, *(f"ip:{n}" for n in PRIVATE_NETWORKS))
    for item in allowed:
        try:
            patterns.append(f"ip:{ipaddress.ip_network(item, strict=False)}")
        except ValueError:
            patterns += [f"dns:{item}", f"dns:**.{item}"]
    return tuple(patterns)


def expand_name_patterns(patterns: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """``patterns`` with ``OPERATOR_NAMES`` replaced by what it stands for."""
    out: list[str] = []
    for pattern in patterns:
        out += operator_name_patterns(allowed) if pattern == OPERATOR_NAMES else [pattern]
    return tuple(out)


def validate_name_pattern(pattern: str) -> str:
    """Check an ``allowed_names`` entry; return it unchanged."""
    if pattern == OPERATOR_NAMES:
        return pattern
    kind, sep, value = pattern.partition(":")
    if not sep or kind not in {"dns", "ip", "email", "uri"} or not value:
        raise PolicyViolation(f"name pattern {pattern!r} must look like dns:…, ip:…, email:… or uri:…")
    if kind == "ip":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise PolicyViolation(f"name pattern {pattern!r} is not an IP network") from None
    return pattern


@dataclass(frozen=True)
class ProfilePolicy:
    """What a profile allows, frozen; ``check`` applies its validators to a request."""

    name: str
    validity_days: int
    default_validity_days: int
    key_types: frozenset[str]
    min_rsa_bits: int
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    allowed_names: tuple[str, ...]
    require_san: bool
    requires_approval: bool
    is_ca: bool
    path_length: int | None
    ocsp_no_check: bool
    approvals_required: int = 1

    @classmethod
    def from_profile(cls, profile: Profile) -> ProfilePolicy:
        """Build the policy from a Profile row, validating its fields."""
        for ku in profile.key_usage:
            if ku not in KEY_USAGES:
                raise PolicyViolation(f"profile {profile.name}: unknown key usage {ku!r}")
        for eku in profile.extended_key_usage:
            eku_oid(eku)
        for kt in profile.key_types:
            if kt not in KEY_FAMILIES:
                raise PolicyViolation(f"profile {profile.name}: unknown key type {kt!r}")
        for pattern in profile.allowed_names:
            validate_name_pattern(pattern)
        if profile.default_validity_days > profile.validity_days:
            raise PolicyViolation(f"profile {profile.name}: default validity exceeds the cap")
        if not 1 <= profile.approvals_required <= MAX_APPROVALS:
            raise PolicyViolation(
                f"profile {profile.name}: approvals_required must be between 1 and {MAX_APPROVALS}"
            )
        return cls(
            name=profile.name,
            validity_days=profile.validity_days,
            default_validity_days=profile.default_validity_days,
            key_types=frozenset(profile.key_types),
            min_rsa_bits=profile.min_rsa_bits,
            key_usage=tuple(profile.key_usage),
            extended_key_usage=tuple(profile.extended_key_usage),
            allowed_names=expand_name_patterns(profile.allowed_names, pki_settings().allowed_domains),
            require_san=profile.require_san,
            requires_approval=profile.requires_approval,
            is_ca=profile.is_ca,
            path_length=profile.path_length,
            ocsp_no_check=profile.ocsp_no_check,
            approvals_required=profile.approvals_required,
        )

    # --- derived values -------------------------------------------------------------------
    def validity_for(self, requested_days: int | None) -> int:
        """Return the validity to issue, refusing a request past the cap."""
        if requested_days is None:
            return self.default_validity_days
        if requested_days < 1:
            raise PolicyViolation("validity must be at least one day")
        if requested_days > self.validity_days:
            raise PolicyViolation(
                f"validity of {requested_days} days exceeds profile {self.name}'s cap of {self.validity_days}"
            )
        return requested_days

    def key_usage_for(self, key_type: KeyType) -> x509.KeyUsage | None:
        """Return the KeyUsage extension for a key of ``key_type`` (usages the key can't have dropped)."""
        usages = set(self.key_usage)
        if key_type.startswith("ec-"):
            usages -= _NOT_FOR_EC
        elif key_type in PURE_SIGNATURE_TYPES:
            usages -= _NOT_FOR_EDDSA
        if not usages:
            return None
        flags = {name: name in usages for name in KEY_USAGES}
        if not flags["key_agreement"]:
            flags["encipher_only"] = flags["decipher_only"] = False
        return x509.KeyUsage(**flags)

    def extended_key_usage_for(self) -> x509.ExtendedKeyUsage | None:
        """Return the ExtendedKeyUsage extension, or None when the profile lists none."""
        if not self.extended_key_usage:
            return None
        return x509.ExtendedKeyUsage([eku_oid(e) for e in self.extended_key_usage])

    def sans_for(self, csr: CheckedCSR) -> tuple[SAN, ...]:
        """Return the SANs to issue: the CSR's, plus a DNS-like CN when the profile needs a SAN."""
        sans = list(csr.sans)
        cn = csr.common_name
        if self.require_san and cn and looks_like_dns_name(cn):
            candidate = SAN("dns", cn.lower())
            if candidate not in sans:
                sans.insert(0, candidate)
        return tuple(sans)

    # --- validators -----------------------------------------------------------------------
    def check(self, csr: CheckedCSR, *, validity_days: int | None) -> tuple[SAN, ...]:
        """Apply every validator; return the SANs to issue."""
        sans = self.sans_for(csr)
        for validator in VALIDATORS:
            validator(self, csr, sans)
        self.validity_for(validity_days)
        return sans


def check_key(policy: ProfilePolicy, csr: CheckedCSR, _sans: Sequence[SAN]) -> None:
    """The key type must be one the profile lists, RSA at least ``min_rsa_bits``."""
    check_public_key(policy, csr.public_key)


def check_public_key(policy: ProfilePolicy, public_key: CertificatePublicKeyTypes) -> None:
    """Raise ``WeakKey`` unless ``public_key`` is of a type and size the profile allows."""
    kt = key_type_of(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        if "rsa" not in policy.key_types and kt not in policy.key_types:
            raise WeakKey(f"profile {policy.name} does not allow RSA keys")
        if public_key.key_size < policy.min_rsa_bits:
            raise WeakKey(
                f"RSA key of {public_key.key_size} bits is below profile {policy.name}'s minimum "
                f"of {policy.min_rsa_bits}"
            )
        return
    family = "ec" if kt.startswith("ec-") else kt
    if kt not in policy.key_types and family not in policy.key_types:
        raise WeakKey(f"profile {policy.name} does not allow {kt} keys")


def check_names(policy: ProfilePolicy, csr: CheckedCSR, sans: Sequence[SAN]) -> None:
    """Every SAN must match an allowed pattern; a SAN is required when the profile says so."""
    if policy.require_san and not sans:
        raise NameNotAllowed(f"profile {policy.name} requires at least one subject alternative name")
    for san in sans:
        if not any(name_matches(san, p) for p in policy.allowed_names):
            raise NameNotAllowed(f"{san} is not allowed by profile {policy.name}")
    if not list(csr.subject) and not sans:
        raise NameNotAllowed("a certificate needs a subject or a subject alternative name")


def check_not_ca_request(policy: ProfilePolicy, csr: CheckedCSR, _sans: Sequence[SAN]) -> None:
    """An end-entity profile refuses a CSR that asks for CA basic constraints."""
    try:
        bc = csr.csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if bc.ca and not policy.is_ca:
        raise PolicyViolation(f"profile {policy.name} issues end-entity certificates; the CSR asks for a CA")


VALIDATORS: list[Callable[[ProfilePolicy, CheckedCSR, Sequence[SAN]], None]] = [
    check_key,
    check_names,
    check_not_ca_request,
]


def all_key_types(values: Iterable[str]) -> list[str]:
    """Validate and return a list of key families for a profile."""
    out = []
    for v in values:
        if v not in KEY_FAMILIES:
            raise PolicyViolation(f"unknown key type {v!r}")
        out.append(v)
    return out
