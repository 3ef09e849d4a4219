"""docs/runbooks/offline-root.md runs as written: two KMI instances, two databases, one checkout."""

from __future__ import annotations

import re

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop
PAGE = "docs/runbooks/offline-root.md"


def test_the_offline_root_ceremony_runs_as_written(checkout):
    work, env = checkout()
    result = run_blocks(sh_blocks(PAGE), cwd=work, env=env)
    out = result.stdout
    # Two databases: the root's key and records only offline, the issuing CA's only online.
    assert (work / "offline" / "kmi.sqlite3").exists()
    assert (work / "online" / "kmi.sqlite3").exists()
    assert "CA issuing waits for its certificate" in out
    assert "signed CA certificate CN=Example Issuing CA,O=Example" in out
    assert "imported CA root: CN=Example Root CA,O=Example, certificate only" in out
    assert "installed the certificate of CA issuing" in out
    assert "served at http://pki.example.test/crl/root.crl" in out
    assert "URI:http://pki.example.test/crl/root.crl" in out  # the issuing CA's CDP
    assert len(re.findall(r"^\S+\.pem: OK$", out, flags=re.MULTILINE)) == 3
    assert "revoked, as it should be" in out
    assert "refused, as it should be" in out
    assert "is revoked" in result.stderr  # why the online issuing CA refused
