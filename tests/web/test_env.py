"""Start-up validation of the environment: a bad value stops the process with a one-line reason
naming the variable, and never prints a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pki.conf import parse_kek_lines
from web.env import env_log_level, env_rate, redact_url

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


def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path):
    # The wiring: web/settings.py reads the rate through env_rate (checked in-process below).
    assert "KMI_API_ENROLL_RATE='lots'" in _refused(_start(tmp_path, KMI_API_ENROLL_RATE="lots"))


@pytest.mark.parametrize(
    ("helper", "name", "value"),
    [
        (env_rate, "KMI_API_ENROLL_RATE", "lots"),
        (env_rate, "KMI_API_ENROLL_RATE", "10/fortnight"),
        (env_rate, "KMI_API_TOKEN_RATE", "0/minute"),
        (env_log_level, "KMI_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(monkeypatch, helper, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=f"^{name}="):
        helper(name, "INFO" if helper is env_log_level else "1/s")


def test_good_values_are_read(monkeypatch):
    monkeypatch.setenv("KMI_API_ENROLL_RATE", "600/minute")
    monkeypatch.setenv("KMI_LOG_LEVEL", "debug")
    assert env_rate("KMI_API_ENROLL_RATE", "1/s") == "600/minute"
    assert env_rate("KMI_UNSET_RATE", "5/s") == "5/s"
    assert env_log_level("KMI_LOG_LEVEL", "INFO") == "DEBUG"


def test_a_mis_pasted_kek_line_is_not_echoed():
    with pytest.raises(ImproperlyConfigured) as raised:
        parse_kek_lines(SECRET_LOOKING, source="KMI_KEK")
    assert "KMI_KEK: KEK entry 1" in str(raised.value)
    assert SECRET_LOOKING[:4] not in str(raised.value)


def test_a_bad_database_url_does_not_print_its_password(tmp_path):
    message = _refused(
        _start(tmp_path, DATABASE_URL="postgres://kmi:S3cretPassw0rd@db.example.test:notaport/kmi")
    )
    assert "S3cretPassw0rd" not in message
    assert "DATABASE_URL" in message


@pytest.mark.parametrize(
    "url",
    [
        "postgres://kmi:S3cretPassw0rd@db.example.test:5432/kmi",
        "redis://:S3cretPassw0rd@cache.example.test/0",
        "postgres://kmi:S3cretPassw0rd@db.example.test:notaport/kmi",
    ],
)
def test_urls_are_shown_without_their_password(url):
    shown = redact_url(url)
    assert "S3cretPassw0rd" not in shown
    assert shown.split(":", 1)[0] == url.split(":", 1)[0]
