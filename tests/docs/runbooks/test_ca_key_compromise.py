"""docs/runbooks/ca-key-compromise.md: the compromised CA is revoked, refused, and replaced."""

from __future__ import annotations

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/runbooks/ca-key-compromise.md"


def test_a_compromised_issuing_ca_is_revoked_refused_and_replaced(pki_checkout):
    work, env = pki_checkout
    headings = (
        "Revoke the CA's key",
        "Publish the parent's CRL now",
        "Check that KMI refuses the CA",
        "Replace it",
    )
    blocks = [b for heading in headings for b in sh_blocks(PAGE, under=heading)]
    done = run_blocks(blocks, cwd=work, env=env, prelude=". .venv/bin/activate", timeout=180)
    assert "cACompromise" in done.stdout  # show_cert: the CA certificate, revoked at the root
    assert "CA issuing is disabled" in done.stderr
    assert "created intermediate CA issuing-2 under root" in done.stdout
    assert (work / "www.pem").exists()
