"""docs/guide/keys.md: the SoftHSM2 walk-through makes a root CA whose key lives on the token."""

from __future__ import annotations

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop

PAGE = "docs/guide/keys.md"


def test_softhsm_walkthrough_makes_a_root_ca_on_the_token(checkout):
    work, env = checkout()
    result = run_blocks(
        sh_blocks(PAGE, under="Trying it with SoftHSM2"),
        cwd=work,
        env=env,
        prelude=". .venv/bin/activate",
        timeout=120,
    )
    assert "created root CA hsm-root" in result.stdout
    # The key is on the token: the module lists a private key object for it.
    listing = run_blocks(
        [],
        cwd=work,
        env=env,
        prelude=(
            ". .venv/bin/activate\n"
            f"export SOFTHSM2_CONF={work}/var/softhsm2.conf\n"
            "python - <<'PY'\n"
            "import pkcs11\n"
            "lib = pkcs11.lib('/usr/lib/softhsm/libsofthsm2.so')\n"
            "with lib.get_token(token_label='kmi').open(user_pin='1234') as session:\n"
            "    keys = session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})\n"
            "    print(len(list(keys)))\n"
            "PY"
        ),
    )
    assert listing.stdout.strip() == "1"
