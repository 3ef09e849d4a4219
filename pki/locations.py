"""Public URLs of the HTTP repository, written into every certificate (CDP, AIA)."""

from __future__ import annotations

from pki.conf import pki_settings


def crl_url(ca_name: str, shard: int | None = None) -> str:
    """URL of the CA's DER CRL (or of one shard of a partitioned CRL)."""
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
