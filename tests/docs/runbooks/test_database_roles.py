"""docs/runbooks/database-roles.md: an owner role migrates, the application role runs KMI and can
neither rewrite the audit trail nor delete a certificate (issue 10 §2).

The page runs against a scratch database of this test on the test server; the roles' names are
this test's own (roles are shared by every database of the server).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/runbooks/database-roles.md"


def _server_url(name: str) -> str:
    parts = urlsplit(os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def scratch() -> Iterator[dict[str, str]]:
    """Names for the page: a database and two roles of this test, dropped afterwards."""
    names = {
        "KMI_DB": f"kmi_roles_{os.getpid()}",
        "KMI_OWNER": f"kmi_owner_{os.getpid()}",
        "KMI_APP": f"kmi_app_{os.getpid()}",
    }

    def drop(admin: psycopg.Connection) -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{names["KMI_DB"]}" WITH (FORCE)')
        for role in (names["KMI_APP"], names["KMI_OWNER"]):
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')

    with psycopg.connect(_server_url("postgres"), autocommit=True) as admin:
        drop(admin)
        try:
            yield names
        finally:
            drop(admin)


def test_the_application_role_runs_kmi_but_cannot_rewrite_the_trail(checkout, scratch):
    work, env = checkout()
    parts = urlsplit(_server_url("postgres"))
    env.update(
        scratch,
        PGADMIN_URL=_server_url("postgres"),
        PGHOSTPORT=parts.netloc.rsplit("@", 1)[-1],
        OWNER_PASSWORD="owner-secret-1",
        APP_PASSWORD="app-secret-2",
        KMI_KEK_FILE="var/kek",
        KMI_AUDIT_CHECKPOINT_PATH=str(work / "exported" / "checkpoints.jsonl"),
    )
    done = run_blocks(sh_blocks(PAGE), cwd=work, env=env, prelude=". .venv/bin/activate", timeout=300)
    out = done.stdout
    assert "created root CA root" in out
    assert "checkpoint 1: " in out
    assert "events: OK (1 checkpoints)" in out
    for statement in (
        "UPDATE pki_auditevent",
        "DELETE FROM pki_auditevent",
        "DELETE FROM pki_certificate",
        "DELETE FROM pki_blockedkey",
    ):
        assert f"refused: {statement}" in out
    assert "ALLOWED" not in out
    assert out.rstrip().endswith("f|f|f")
    assert (work / "exported" / "checkpoints.jsonl").read_text().count("\n") == 1
    # The owner's own ordinary session is refused by the triggers as well.
    owner = f"postgres://{scratch['KMI_OWNER']}:owner-secret-1@{env['PGHOSTPORT']}/{scratch['KMI_DB']}"
    with psycopg.connect(owner, autocommit=True) as conn, pytest.raises(psycopg.Error, match="is refused"):
        conn.execute("UPDATE pki_auditevent SET actor = 'mallory'")
