"""docs/runbooks/backup-restore.md: a backup restored into a fresh database, as the page says.

A KMI on PostgreSQL with a root CA in a SoftHSM2 token and an issuing CA sealed under a KEK
file issues and revokes a certificate; the page's backup steps run, the KEK file and the token
are lost, and the page's restore steps bring everything back into another database, where the
audit trail verifies and each CA signs a CRL that openssl accepts and that lists the revocation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.support.docs import ROOT, run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/runbooks/backup-restore.md"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def _server_url(name: str) -> str:
    parts = urlsplit(os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two empty databases on the test server (the installation's and the restore target)."""
    names = [f"kmi_runbook_{os.getpid()}_{role}" for role in ("live", "restored")]
    with psycopg.connect(_server_url("postgres"), autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _server_url(names[0]), _server_url(names[1])
        finally:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _softhsm_conf(folder: Path) -> Path:
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\n")
    return conf


def test_backup_restores_into_a_fresh_database(checkout, databases):
    work, env = checkout()
    live, restored = databases
    env.update(
        DATABASE_URL=live,
        KMI_KEK_FILE=str(work / "live" / "kek"),
        SOFTHSM2_CONF=str(_softhsm_conf(work / "live")),
        KMI_PKCS11_MODULE=SOFTHSM,
        KMI_PKCS11_PIN="1234",
        BACKUP_DIR=str(work / "backup"),
        KEK_BACKUP=str(work / "offline" / "kek"),
        RESTORE_TO=restored,
        RESTORED_KEK_FILE=str(work / "restored" / "kek"),
        RESTORED_SOFTHSM2_CONF=str(_softhsm_conf(work / "restored")),
    )
    env["LEAF_CSR"] = str(ROOT / "tests" / "fixtures" / "csrs" / "ec-p256.pem")
    (work / "offline").mkdir()
    # The installation: a root in the HSM, an issuing CA sealed under the KEK, a revoked leaf.
    installation = """
        . .venv/bin/activate
        python manage.py migrate -v0
        python manage.py create_kek --out "$KMI_KEK_FILE" >/dev/null
        softhsm2-util --init-token --free --label kmi --pin 1234 --so-pin 5678 >/dev/null
        python manage.py init_ca --name root --subject "CN=Runbook Root" --backend pkcs11
        python manage.py init_ca --name issuing --parent root --subject "CN=Runbook Issuing" --path-length 0
        python manage.py sign_csr --ca issuing --profile tls-server --csr "$LEAF_CSR" --out leaf.pem
        serial=$(openssl x509 -in leaf.pem -noout -serial | cut -d= -f2)
        python manage.py revoke "$serial" --reason keyCompromise
        python manage.py publish_crl --ca issuing
        echo "$serial" > revoked-serial
    """
    run_blocks([], cwd=work, env=env, prelude=installation, timeout=300)
    run_blocks(sh_blocks(PAGE, under="Back up") + sh_blocks(PAGE, under="HSM token"), cwd=work, env=env,
               prelude=". .venv/bin/activate")  # fmt: skip
    # The disaster: the live KEK file and token are gone (the database could be too).
    Path(env["KMI_KEK_FILE"]).unlink()
    for token_file in (work / "live" / "tokens").rglob("*"):
        if token_file.is_file():
            token_file.unlink()
    restore = sh_blocks(PAGE, under="Restore") + sh_blocks(PAGE, under="Check the restore")
    done = run_blocks(restore, cwd=work, env=env, prelude=". .venv/bin/activate", timeout=300)

    assert re.search(r"\d+ streams, \d+ events: OK", done.stdout)  # verify_audit on the restored copy
    assert done.stderr.count("verify OK") == 2  # each CA's new CRL, checked by openssl
    serial = (work / "revoked-serial").read_text().strip()
    assert re.search(rf"Serial Number: {serial}", done.stdout, flags=re.IGNORECASE)
    with psycopg.connect(restored) as db:
        numbers = db.execute(
            "SELECT ca.name, max(crl.crl_number) FROM pki_certificaterevocationlist crl "
            "JOIN pki_certificateauthority ca ON ca.id = crl.ca_id GROUP BY ca.name"
        ).fetchall()
    assert dict(numbers)["issuing"] >= 2  # the restored counter went on from the backup's CRL
