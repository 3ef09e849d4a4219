"""Public URLs of the HTTP repository, written into every certificate (CDP, AIA).

Every URL names a CA *generation* (one CA key) by its repository name: the CA's name for the
first generation, ``<name>.g<n>`` for generation n after a rollover. A certificate keeps
pointing at the generation that signed it: its CRL, its OCSP responder and its issuer's
certificate stay where its extensions say, whatever the CA does later. CA names never contain
a dot, so these names cannot collide with another CA's.
"""

from __future__ import annotations

import re

from pki.conf import pki_settings

GENERATION_MARK = ".g"
_REPOSITORY_NAME = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{0,62})(?:\.g(?P<generation>[1-9][0-9]{0,5}))?$")


def repository_name(ca_name: str, generation: int = 1) -> str:
    """The name of generation ``generation`` of CA ``ca_name`` in URLs and CRL file names."""
    if generation <= 1:
        return ca_name
    return f"{ca_name}{GENERATION_MARK}{generation}"


def parse_repository_name(text: str) -> tuple[str, int] | None:
    """``issuing`` -> (issuing, 1); ``issuing.g2`` -> (issuing, 2); anything else None."""
    match = _REPOSITORY_NAME.match(text)
    if match is None:
        return None
    number = int(match["generation"] or 1)
    if match["generation"] and number == 1:
        return None  # the first generation has one name only: the CA's
    return match["name"], number


def crl_url(ca_name: str, shard: int | None = None) -> str:
    """URL of the CA's DER CRL (or of one shard of a partitioned CRL); ``ca_name`` is a
    repository name (``repository_name``)."""
    base = pki_settings().base_url
    if shard is None:
        return f"{base}/crl/{ca_name}.crl"
    return f"{base}/crl/{ca_name}-{shard}.crl"


def crl_pem_url(ca_name: str, shard: int | None = None) -> str:
    """URL of the same CRL as PEM (for people and tools that want text)."""
    return crl_url(ca_name, shard) + ".pem"


def ca_certificate_url(ca_name: str) -> str:
    """URL of the CA's DER certificate (AIA caIssuers)."""
    return f"{pki_settings().base_url}/ca/{ca_name}.cer"


def ca_certificate_pem_url(ca_name: str) -> str:
    """URL of the CA's certificate as PEM."""
    return f"{pki_settings().base_url}/ca/{ca_name}.pem"


def ca_chain_url(ca_name: str) -> str:
    """URL of the CA's PEM chain up to its root."""
    return f"{pki_settings().base_url}/ca/{ca_name}-chain.pem"


def ocsp_url(ca_name: str) -> str:
    """URL of the CA's OCSP responder (AIA OCSP)."""
    return f"{pki_settings().base_url}/ocsp/{ca_name}"
