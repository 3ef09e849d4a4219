"""docs/runbooks/adding-a-ca.md: a new issuing CA, checked by openssl and pkilint, put to use."""

from __future__ import annotations

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/runbooks/adding-a-ca.md"


def test_a_new_issuing_ca_chains_lints_clean_and_issues(pki_checkout):
    work, env = pki_checkout
    blocks = [
        b for heading in ("Create it", "Check it", "Put it to use") for b in sh_blocks(PAGE, under=heading)
    ]
    done = run_blocks(blocks, cwd=work, env=env, prelude=". .venv/bin/activate", timeout=180)
    assert "created intermediate CA issuing-2 under root" in done.stdout
    assert done.stdout.count(": OK") >= 2  # openssl verify of the CA and of the leaf
    assert (work / "www.pem").exists()
    assert "corp-2" in done.stdout
