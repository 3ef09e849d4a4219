"""docs/runbooks/ca-rollover.md runs as written, on a fresh database with a root and an issuing CA."""

from __future__ import annotations

import re

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop
PAGE = "docs/runbooks/ca-rollover.md"

# A certificate issued before any rollover (the checkout has the CAs root and issuing).
PRELUDE = """
. .venv/bin/activate
python manage.py sign_csr --ca issuing --profile tls-server --csr www.csr --out www.pem >/dev/null 2>&1
"""


def test_the_rollover_runbook_runs_as_written(pki_checkout):
    work, env = pki_checkout
    result = run_blocks(sh_blocks(PAGE), cwd=work, env=env, prelude=PRELUDE)
    out = result.stdout
    assert "CA issuing generation 2: ec-p256 key" in out
    assert "CA root generation 2: ec-p384 key" in out
    assert "CA issuing generation 3" in out
    assert "CA issuing generation 4" in out
    assert "takes over at" in out
    # Every openssl verify of the page said OK: old and new generations, both bridges.
    assert len(re.findall(r"^\S+\.pem: OK$", out, flags=re.MULTILINE)) == 5
    assert "URI:http://127.0.0.1:8000/crl/issuing.g2.crl" in out
    assert "generation 4: pending" in out
    assert "renewed CA root" in out
    assert "renewed CA issuing" in out
