"""README's "A short tour" runs verbatim on a fresh SQLite database, as a newcomer would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return block


def test_readme_tour_works_on_a_fresh_database(tmp_path: Path):
    # A fresh checkout with .venv/ (manage.py and .venv linked from this one) and no var/ yet.
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    (work / ".venv").symlink_to(sys.prefix)  # the virtualenv running these tests
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KMI_", "DATABASE_URL", "REDIS_URL", "DJANGO_", "VIRTUAL_ENV"))
    }
    env["KMI_DATA_DIR"] = str(work / "var")
    # Without `make run`: the README's alternative (create_kek makes var/), then migrate.
    setup = "python manage.py create_kek --out var/kek >/dev/null && python manage.py migrate -v0"
    script = f"set -euo pipefail\n. .venv/bin/activate\n{setup}\n{tour_script()}"
    result = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "created root CA tour-root" in out
    assert "created intermediate CA tour-issuing under tour-root" in out
    assert "issued under profile tls-server" in out
    # The URLs the README promises are the ones in the certificate.
    for url in (
        "http://127.0.0.1:8000/crl/tour-issuing.crl",
        "http://127.0.0.1:8000/ocsp/tour-issuing",
        "http://127.0.0.1:8000/ca/tour-issuing.cer",
    ):
        assert f"URI:{url}" in out
        assert url.rsplit("/", 1)[-1] in (ROOT / "README.md").read_text(encoding="utf-8")
    assert (work / "www.pem").exists()
    assert (work / "chain.pem").exists()
    assert (work / "var" / "kmi.sqlite3").exists()
