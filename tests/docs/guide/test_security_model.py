"""docs/guide/security-model.md: checkpoints exported, the audit key pinned, the trail verified
against the auditor's copy — and a lane deleted behind KMI's back is reported."""

from __future__ import annotations

import sqlite3

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/guide/security-model.md"
HEADING = "Verify the audit trail against exported checkpoints"


def test_the_trail_verifies_against_the_exported_copy_until_a_lane_is_deleted(pki_checkout):
    work, env = pki_checkout
    make, verify = sh_blocks(PAGE, under=HEADING)
    done = run_blocks([make, verify], cwd=work, env=env, prelude=". .venv/bin/activate", timeout=180)
    assert "checkpoint 1: " in done.stdout
    assert "events: OK (1 checkpoints)" in done.stdout
    assert (work / "audit-key.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # Someone with the database file deletes the root CA's lane (SQLite has no triggers).
    with sqlite3.connect(work / "var" / "kmi.sqlite3") as db:
        lane = db.execute(
            "SELECT stream FROM pki_auditevent WHERE action = 'ca.created' ORDER BY id LIMIT 1"
        ).fetchone()[0]
        db.execute("DELETE FROM pki_auditevent WHERE stream = ?", [lane])
        db.execute("DELETE FROM pki_auditstream WHERE name = ?", [lane])
    with pytest.raises(AssertionError, match=f"BROKEN {lane} at seq \\d+: exported checkpoint 1 covered"):
        run_blocks([verify], cwd=work, env=env, prelude=". .venv/bin/activate", timeout=120)
