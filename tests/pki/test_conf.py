"""PKI settings are validated once; bad values fail fast with a message naming the variable."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ImproperlyConfigured

from pki.conf import build_lifecycle_settings, build_settings, parse_kek_lines
from tests.conftest import kek_line

BACKENDS = {"encrypted": {"BACKEND": "pki.keys.encrypted.EncryptedKeyBackend"}}


def conf(**overrides: object) -> dict[str, object]:
    return {"BASE_URL": "http://pki.example.test/", "KEY_BACKENDS": BACKENDS, **overrides}


def test_valid_settings_are_frozen_and_normalised():
    s = build_settings(conf(KEK=f"{kek_line('a', b'1')},{kek_line('b', b'2')}"))
    assert s.base_url == "http://pki.example.test"
    assert s.current_kek_id == "b"
    assert s.kek_problem is None
    assert "keks" not in repr(s)  # KEKs never show up in a repr (tracebacks, debug pages)
    with pytest.raises(TypeError):
        s.keks["c"] = b""  # type: ignore[index]


def test_relisting_a_kek_makes_it_current():
    text = "\n".join(["# comment", kek_line("a", b"1"), kek_line("b", b"2"), kek_line("a", b"1"), ""])
    assert list(parse_kek_lines(text, source="f")) == ["b", "a"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("no-separator", "KEK entries look like 'id:base64key'"),
        ("bad id!:AAAA", "KEK entries look like"),
        ("a:!!!notbase64", "not valid base64"),
        ("a:" + base64.urlsafe_b64encode(b"short").decode(), "is 5 bytes; a KEK is 32 bytes"),
    ],
)
def test_bad_kek_entries_fail_fast(line, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        build_settings(conf(KEK=line))


@pytest.mark.parametrize("url", ["ftp://x.test", "pki.example.test", "http://x.test/?q=1", ""])
def test_base_url_must_be_absolute_http(url):
    with pytest.raises(ImproperlyConfigured, match="KMI_BASE_URL"):
        build_settings(conf(BASE_URL=url))


def test_kek_file_missing_is_reported_not_fatal(tmp_path):
    s = build_settings(conf(KEK_FILE=str(tmp_path / "kek")))
    assert s.current_kek_id is None
    assert s.kek_problem is not None
    assert "does not exist (create it: manage.py create_kek --out" in s.kek_problem


def test_kek_file_is_read(tmp_path):
    (tmp_path / "kek").write_text(kek_line("from-file", b"x") + "\n")
    assert build_settings(conf(KEK_FILE=str(tmp_path / "kek"))).current_kek_id == "from-file"
    (tmp_path / "kek").write_text("garbage\n")
    with pytest.raises(ImproperlyConfigured, match="KMI_KEK_FILE="):
        build_settings(conf(KEK_FILE=str(tmp_path / "kek")))


def test_no_kek_is_a_problem_until_used():
    assert build_settings(conf()).kek_problem == (
        "no key-encryption key: set KMI_KEK_FILE or KMI_KEK (manage.py create_kek makes one)"
    )


def test_backends_are_checked():
    with pytest.raises(ImproperlyConfigured, match="has no BACKEND path"):
        build_settings(conf(KEY_BACKENDS={"x": {}}))
    with pytest.raises(
        ImproperlyConfigured, match="KMI_DEFAULT_KEY_BACKEND='hsm' is not a configured backend"
    ):
        build_settings(conf(DEFAULT_KEY_BACKEND="hsm"))


def test_bad_lifecycle_settings_are_refused_at_start_up():
    with pytest.raises(ImproperlyConfigured, match="whole days"):
        build_lifecycle_settings({"EXPIRY_THRESHOLDS": "30,soon"})
    with pytest.raises(ImproperlyConfigured, match="at least 1 day"):
        build_lifecycle_settings({"EXPIRY_THRESHOLDS": "30,0"})
    with pytest.raises(ImproperlyConfigured, match="KMI_SIGNING"):
        build_lifecycle_settings({"SIGNING": "elsewhere"})
    with pytest.raises(ImproperlyConfigured, match="http"):
        build_lifecycle_settings({"ALERT_WEBHOOK_URL": "ftp://x"})
