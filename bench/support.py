"""What the benchmarks share: their own database, and a root and an issuing CA in it.

Every benchmark works in a database of its own, created empty at the start and dropped at the
end, so the PostgreSQL server is left as the benchmark found it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pki.models import CertificateAuthority


def recreate_database(url: str, *, create: bool = True) -> None:
    """Drop the database ``url`` names (closing its sessions) and, unless ``create`` is False,
    create it again empty."""
    import psycopg

    url = url.replace("postgres://", "postgresql://", 1)
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def create_cas(
    root: str = "root",
    issuing: str = "issuing",
    *,
    key_type: str = "ec-p256",
    organization: str = "",
) -> tuple[CertificateAuthority, CertificateAuthority]:
    """A root CA and an issuing CA under it (path length 0), in the configured database."""
    from pki.authorities import create_intermediate_ca, create_root_ca
    from pki.x509.names import parse_subject

    suffix = f",O={organization}" if organization else ""
    root_ca = create_root_ca(
        name=root, subject=parse_subject(f"CN=Bench Root{suffix}"), key_type=key_type, actor="bench"
    )
    issuing_ca = create_intermediate_ca(
        name=issuing,
        parent=root_ca,
        subject=parse_subject(f"CN=Bench Issuing CA{suffix}"),
        key_type=key_type,
        path_length=0,
        actor="bench",
    )
    return root_ca, issuing_ca
