"""Every setting is declared once, parsed and checked at start-up, and never echoes a secret."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from pki.settings_registry import SETTINGS, coerce, load_environment, read
from tests.support.docs import ROOT

SECRET = "hunter2-do-not-print-me"


def test_defaults_are_valid_values_of_their_own_type():
    values = load_environment({})
    assert values["KMI_CRL_HISTORY"] == 3
    assert values["KMI_EXPIRY_THRESHOLDS"] == (30, 14, 7, 1)
    assert values["KMI_ACME_REUSE_AUTHORIZATIONS"] is True
    assert values["KMI_OCSP_RESPONDER_RENEW_FRACTION"] == 0.5
    assert values["DATABASE_URL"] is None  # computed by web.settings from KMI_DATA_DIR


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("KMI_CRL_HISTORY", "0", "KMI_CRL_HISTORY='0' is below the minimum 1"),
        ("KMI_CRL_HISTORY", "three", "KMI_CRL_HISTORY='three' is not an integer"),
        ("KMI_ACME_HTTP01_PORT", "70000", "is above the maximum 65535"),
        ("KMI_DEBUG", "maybe", "KMI_DEBUG='maybe' is not a boolean"),
        ("KMI_SIGNING", "elsewhere", "must be one of inprocess, worker"),
        ("KMI_BASE_URL", "pki.example.test", "must be an absolute http(s) URL"),
        ("KMI_EXPIRY_THRESHOLDS", "30,soon", "comma-separated whole days"),
        ("KMI_OCSP_RESPONDER_RENEW_FRACTION", "1", "strictly between 0 and 1"),
        ("KMI_API_ENROLL_RATE", "lots", "must look like 600/minute"),
        ("KMI_API_ENROLL_RATE", "0/minute", "at least 1 request"),
        ("KMI_API_TOKEN_RATE", "5/fortnight", "must look like 600/minute"),
        ("KMI_ACME_HOSTS", "x=not-an-ip", "name-or-glob=ip"),
        ("REDIS_URL", "http://cache", "REDIS_URL must start with redis://"),
    ],
)
def test_a_bad_value_names_its_variable(name, raw, message):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        read(name, {name: raw})


def test_an_empty_variable_has_its_default():
    values = load_environment(
        {"KMI_CRL_HISTORY": "", "KMI_ALLOWED_HOSTS": " ", "KMI_ACME_REUSE_AUTHORIZATIONS": ""}
    )
    assert values["KMI_CRL_HISTORY"] == 3
    assert values["KMI_ALLOWED_HOSTS"] == ("*",)
    assert values["KMI_ACME_REUSE_AUTHORIZATIONS"] is True


def test_start_up_reports_every_bad_variable_at_once():
    with pytest.raises(ImproperlyConfigured) as caught:
        load_environment({"KMI_CRL_HISTORY": "0", "KMI_DEBUG": "maybe", "KMI_BASE_URL": "ftp://x"})
    assert all(name in str(caught.value) for name in ("KMI_CRL_HISTORY", "KMI_DEBUG", "KMI_BASE_URL"))


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("KMI_KEK", f"{SECRET}"),  # no id: a whole KEK line without its colon
        ("KMI_KEK", f"k1:{SECRET}"),
        ("DATABASE_URL", f"mysql://kmi:{SECRET}@db/kmi"),
        ("REDIS_URL", f"http://:{SECRET}@cache:6379/0"),
    ],
)
def test_a_bad_secret_is_never_echoed(name, raw):
    with pytest.raises(ImproperlyConfigured) as caught:
        read(name, {name: raw})
    assert name in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_secret_is_read_from_its_file(tmp_path):
    (tmp_path / "pin").write_text(f"{SECRET}\n")
    assert read("KMI_PKCS11_PIN", {"KMI_PKCS11_PIN_FILE": str(tmp_path / "pin")}) == SECRET
    with pytest.raises(ImproperlyConfigured, match="set KMI_PKCS11_PIN or KMI_PKCS11_PIN_FILE, not both"):
        read("KMI_PKCS11_PIN", {"KMI_PKCS11_PIN": "1", "KMI_PKCS11_PIN_FILE": str(tmp_path / "pin")})
    with pytest.raises(ImproperlyConfigured, match="KMI_PKCS11_PIN_FILE='/nonexistent/pin' cannot be read"):
        read("KMI_PKCS11_PIN", {"KMI_PKCS11_PIN_FILE": "/nonexistent/pin"})


def test_a_bad_secret_from_a_file_names_the_file_not_the_value(tmp_path):
    (tmp_path / "db").write_text(f"mysql://kmi:{SECRET}@db/kmi\n")
    with pytest.raises(ImproperlyConfigured) as caught:
        read("DATABASE_URL", {"DATABASE_URL_FILE": str(tmp_path / "db")})
    assert f"DATABASE_URL_FILE={tmp_path / 'db'}" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_typed_values_from_settings_overrides_pass_the_same_checks():
    assert coerce("KMI_CRL_HISTORY", 5) == 5
    assert coerce("KMI_EXPIRY_THRESHOLDS", [7, 30]) == (30, 7)
    with pytest.raises(ImproperlyConfigured, match="KMI_CRL_HISTORY=0 is below the minimum 1"):
        coerce("KMI_CRL_HISTORY", 0)
    with pytest.raises(ImproperlyConfigured, match="must be integer"):
        coerce("KMI_CRL_HISTORY", True)
    with pytest.raises(ImproperlyConfigured, match="must be boolean"):
        coerce("KMI_DEBUG", 1)


def test_a_bad_variable_stops_a_process_at_start_up():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "web.settings", "KMI_CRL_REVOCATION_DELAY": "1"}
    env["KMI_EMAIL_PASSWORD"] = SECRET
    env["KMI_EMAIL_PORT"] = "smtp"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: KMI_CRL_REVOCATION_DELAY='1' is below the minimum 2" in result.stderr
    assert "KMI_EMAIL_PORT='smtp' is not an integer" in result.stderr
    assert SECRET not in result.stderr + result.stdout


_NAME = re.compile(r"""["'`]((?:KMI|DJANGO)_[A-Z0-9_]+)["'`]""")
# Names that look like settings but are not environment variables KMI reads: Django's own
# variable, and the Django settings that hold KMI's validated values.
NOT_SETTINGS = {
    "DJANGO_SETTINGS_MODULE",
    "KMI_ACME",
    "KMI_CONSOLE",
    "KMI_DEVICES",
    "KMI_LIFECYCLE",
    "KMI_MONITOR",
    "KMI_OCSP",
}


def test_every_variable_the_code_names_is_declared():
    named = {
        match.group(1).removesuffix("_FILE")
        for folder in ("pki", "web")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts
        for match in _NAME.finditer(path.read_text(encoding="utf-8"))
    }
    undeclared = sorted(named - set(SETTINGS) - NOT_SETTINGS)
    assert not undeclared, f"declare these in pki/settings_registry.py: {undeclared}"


def test_every_declared_variable_is_read_by_web_settings():
    text = (ROOT / "web" / "settings.py").read_text(encoding="utf-8")
    unread = sorted(
        name for name in SETTINGS if f'env["{name}"]' not in text and f"env['{name}']" not in text
    )
    assert not unread, f"declared but never read in web/settings.py: {unread}"
