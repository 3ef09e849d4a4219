"""docs/guide/keys.md "Key controls": suspending and reactivating a CA key, as written."""

from __future__ import annotations

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop
PAGE = "docs/guide/keys.md"


def test_suspending_and_reactivating_a_ca_key_runs_as_written(pki_checkout):
    work, env = pki_checkout
    done = run_blocks(
        sh_blocks(PAGE, under="Key controls"), cwd=work, env=env, prelude=". .venv/bin/activate"
    )
    assert "(ca, ec-p256) is suspended" in done.stdout
    assert "(encrypted, suspended)" in done.stdout  # show_ca
    assert "(ca, ec-p256) is active" in done.stdout
