"""docs/runbooks/upgrade.md: the migrate and check steps run on an installation."""

from __future__ import annotations

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/runbooks/upgrade.md"


def test_migrate_and_check_steps_run(pki_checkout):
    work, env = pki_checkout
    blocks = sh_blocks(PAGE, under="Migrate") + sh_blocks(PAGE, under="Check")
    done = run_blocks(blocks, cwd=work, env=env, prelude=". .venv/bin/activate", timeout=180)
    assert "No planned migration operations." in done.stdout
    assert "System check identified no issues" in done.stdout
    assert "events: OK" in done.stdout
