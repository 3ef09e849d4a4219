"""Start-up validation of the environment: a bad value stops the process with a one-line reason
naming the variable, and never prints a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
KEK = "kek-1:" + "A" * 43  # 32 zero bytes, base64url
SECRET_LOOKING = "Zm9vYmFyc2VjcmV0a2V5bWF0ZXJpYWwxMjM0NTY3ODkw"


def _start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KMI_", "DJANGO_")) and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    base.update({"KMI_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "web.settings", "KMI_KEK": KEK})
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: ")
    return last


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KMI_API_ENROLL_RATE", "lots"),
        ("KMI_API_ENROLL_RATE", "10/fortnight"),
        ("KMI_API_TOKEN_RATE", "0/minute"),
        ("KMI_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path, name, value):
    assert f"{name}=" in _refused(_start(tmp_path, **{name: value}))


def test_good_rates_start(tmp_path):
    rates = {"KMI_API_ENROLL_RATE": "600/minute", "KMI_API_TOKEN_RATE": "5/s", "KMI_LOG_LEVEL": "debug"}
    result = _start(tmp_path, **rates)
    assert result.returncode == 0, result.stderr


def test_a_mis_pasted_kek_line_is_not_echoed(tmp_path):
    message = _refused(_start(tmp_path, KMI_KEK=SECRET_LOOKING))
    assert "KMI_KEK: KEK entry 1" in message
    assert SECRET_LOOKING[:4] not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgres://kmi:S3cretPassw0rd@db.example.test:notaport/kmi",
        "mysql://kmi:S3cretPassw0rd@db.example.test/kmi",
        "redis://kmi:S3cretPassw0rd@db.example.test/0",
    ],
)
def test_a_bad_database_url_does_not_print_its_password(tmp_path, url):
    message = _refused(_start(tmp_path, DATABASE_URL=url))
    assert "S3cretPassw0rd" not in message
    assert "DATABASE_URL" in message


def test_a_bad_redis_url_does_not_print_its_password(tmp_path):
    message = _refused(_start(tmp_path, REDIS_URL="http://:S3cretPassw0rd@cache.example.test/0"))
    assert "S3cretPassw0rd" not in message
    assert "REDIS_URL=" in message
