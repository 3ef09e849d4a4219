"""Name constraints (RFC 5280 §4.2.1.10) as KMI stores them, and checks against them."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from pki.exceptions import NameNotAllowed, PolicyViolation
from pki.x509.names import SAN, validate_dns_name

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class Subtree:
    """One permitted or excluded subtree: ``dns:example.test``, ``ip:10.0.0.0/8``, ``email:x.test``."""

    kind: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Subtree:
        """Parse and validate ``kind:value``."""
        kind, sep, value = text.partition(":")
        kind = kind.strip().lower()
        value = value.strip()
        if not sep or not value:
            raise PolicyViolation(f"name constraint {text!r} must look like dns:…, ip:…, email:… or uri:…")
        if kind == "dns":
            validate_dns_name(value.lstrip("."), allow_wildcard=False)
        elif kind == "ip":
            try:
                value = str(ipaddress.ip_network(value, strict=True))
            except ValueError:
                raise PolicyViolation(f"name constraint {text!r} is not an IP network") from None
        elif kind not in {"email", "uri"}:
            raise PolicyViolation(f"name constraint type {kind!r} is not supported")
        return cls(kind, value)

    def general_name(self) -> x509.GeneralName:
        """Return the GeneralName for the NameConstraints extension."""
        if self.kind == "dns":
            return x509.DNSName(self.value)
        if self.kind == "ip":
            return x509.IPAddress(ipaddress.ip_network(self.value))
        if self.kind == "email":
            return x509.RFC822Name(self.value)
        return x509.UniformResourceIdentifier(self.value)

    def contains_value(self, kind: str, value: str) -> bool:
        """True when the name ``kind:value`` falls inside this subtree."""
        if kind != self.kind:
            return False
        if kind == "dns":
            return _dns_within(value, self.value)
        if kind == "ip":
            try:
                return ipaddress.ip_address(value) in ipaddress.ip_network(self.value)
            except ValueError:
                return False
        if kind == "email":
            return _email_within(value, self.value)
        host = value.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        return _dns_within(host, self.value)

    def contains_subtree(self, other: Subtree) -> bool:
        """True when every name in ``other`` is also in this subtree."""
        if other.kind != self.kind:
            return False
        if self.kind == "ip":
            a, b = ipaddress.ip_network(other.value), ipaddress.ip_network(self.value)
            return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]
        return self.contains_value(other.kind, other.value.lstrip("."))


def _dns_within(name: str, constraint: str) -> bool:
    name = name.lower().removeprefix("*.")
    c = constraint.lower()
    if c.startswith("."):
        return name.endswith(c)
    return name == c or name.endswith("." + c)


def _email_within(address: str, constraint: str) -> bool:
    address = address.lower()
    c = constraint.lower()
    if "@" in c:
        return address == c
    domain = address.rsplit("@", 1)[-1]
    return _dns_within(domain, c)


@dataclass(frozen=True)
class NameConstraints:
    """Permitted and excluded subtrees of a CA."""

    permitted: tuple[Subtree, ...] = ()
    excluded: tuple[Subtree, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> NameConstraints:
        """Parse the JSON stored on a CA (``{"permitted": [...], "excluded": [...]}``)."""
        data = data or {}
        unknown = set(data) - {"permitted", "excluded"}
        if unknown:
            raise PolicyViolation(f"name constraints have unknown keys: {', '.join(sorted(unknown))}")
        return cls(
            tuple(Subtree.parse(s) for s in data.get("permitted", [])),
            tuple(Subtree.parse(s) for s in data.get("excluded", [])),
        )

    @classmethod
    def from_lists(cls, permitted: Sequence[str], excluded: Sequence[str]) -> NameConstraints:
        """Build from two lists of ``kind:value`` strings."""
        return cls.from_json({"permitted": list(permitted), "excluded": list(excluded)})

    @classmethod
    def from_extension(cls, ext: x509.NameConstraints | None) -> NameConstraints:
        """Read a certificate's NameConstraints extension (a CA KMI imports or installs)."""
        if ext is None:
            return cls()

        def texts(subtrees: Sequence[x509.GeneralName] | None) -> list[str]:
            out = []
            for name in subtrees or []:
                if isinstance(name, x509.DNSName):
                    out.append(f"dns:{name.value}")
                elif isinstance(name, x509.IPAddress):
                    out.append(f"ip:{name.value}")
                elif isinstance(name, x509.RFC822Name):
                    out.append(f"email:{name.value}")
                elif isinstance(name, x509.UniformResourceIdentifier):
                    out.append(f"uri:{name.value}")
                else:
                    raise PolicyViolation(
                        f"name constraints of type {type(name).__name__} are not supported by KMI"
                    )
            return out

        return cls.from_lists(texts(ext.permitted_subtrees), texts(ext.excluded_subtrees))

    @classmethod
    def of_certificate(cls, cert: x509.Certificate) -> NameConstraints:
        """The name constraints a CA certificate carries (none when it has no extension)."""
        try:
            ext = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return cls()
        return cls.from_extension(ext)

    def to_json(self) -> dict[str, list[str]]:
        """Return the JSON form stored on the CA."""
        return {
            "permitted": [f"{s.kind}:{s.value}" for s in self.permitted],
            "excluded": [f"{s.kind}:{s.value}" for s in self.excluded],
        }

    def __bool__(self) -> bool:
        return bool(self.permitted or self.excluded)

    def extension(self) -> x509.NameConstraints | None:
        """Return the NameConstraints extension, or None when there are no constraints."""
        if not self:
            return None
        return x509.NameConstraints(
            permitted_subtrees=[s.general_name() for s in self.permitted] or None,
            excluded_subtrees=[s.general_name() for s in self.excluded] or None,
        )

    def check_name(self, kind: str, value: str) -> None:
        """Raise ``NameNotAllowed`` when ``kind:value`` breaks these constraints."""
        if any(s.contains_value(kind, value) for s in self.excluded):
            raise NameNotAllowed(f"{kind}:{value} is excluded by the CA's name constraints")
        permitted = [s for s in self.permitted if s.kind == kind]
        if permitted and not any(s.contains_value(kind, value) for s in permitted):
            raise NameNotAllowed(f"{kind}:{value} is outside the CA's permitted names")

    def check_sans(self, sans: Sequence[SAN]) -> None:
        """Check every SAN."""
        for san in sans:
            self.check_name(san.kind, san.value)

    def narrowed_by(self, child: NameConstraints) -> NameConstraints:
        """Return the child's constraints made to fit inside these (the parent's).

        A child may narrow but never widen: each of its permitted subtrees must lie inside a
        permitted subtree of the parent of the same type; it inherits the parent's permitted
        subtrees of types it does not name, and every excluded subtree of the parent.
        """
        permitted = list(child.permitted)
        for sub in child.permitted:
            parents = [p for p in self.permitted if p.kind == sub.kind]
            if parents and not any(p.contains_subtree(sub) for p in parents):
                raise NameNotAllowed(f"{sub.kind}:{sub.value} is outside the parent CA's permitted names")
            if any(e.contains_subtree(sub) for e in self.excluded):
                raise NameNotAllowed(f"{sub.kind}:{sub.value} is excluded by the parent CA")
        child_kinds = {s.kind for s in child.permitted}
        permitted += [p for p in self.permitted if p.kind not in child_kinds]
        excluded = list(dict.fromkeys([*child.excluded, *self.excluded]))
        return NameConstraints(tuple(permitted), tuple(excluded))
