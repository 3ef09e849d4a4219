"""The revocation and CRL commands: revoke, unhold, revoke_key, publish_crl, set_crl_shards, init_ca."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator

import pytest
import time_machine
from cryptography import x509
from django.core.management import call_command
from django.core.management.base import CommandError

from pki.enrollment import sign_csr
from pki.models import AuditEvent, CertificateAuthority, CertificateRevocationList, KeyState
from pki.models.key import Key
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """Commands read the real clock: freeze it an hour after the fixtures' CAs were made."""
    with time_machine.travel(NOW + dt.timedelta(hours=1), tick=False):
        yield


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def leaf(issuing_ca, profile):
    return sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)


def test_revoke_command_revokes_durably_and_is_idempotent(leaf):
    colon_serial = ":".join(leaf.serial.zfill(40)[i : i + 2] for i in range(0, 40, 2)).upper()
    out = run(
        "revoke", colon_serial, "--reason", "keyCompromise", "--invalidity-date", "2026-05-30T10:00:00Z"
    )
    assert f"revoked {leaf.serial} (keyCompromise)" in out
    leaf.refresh_from_db()
    assert leaf.revocation_reason == "keyCompromise"
    assert leaf.invalidity_date == dt.datetime(2026, 5, 30, 10, tzinfo=dt.UTC)
    revoked_at = leaf.revoked_at
    run("revoke", leaf.serial, "--reason", "keyCompromise", "--ca", "issuing")
    leaf.refresh_from_db()
    assert leaf.revoked_at == revoked_at
    assert AuditEvent.objects.filter(action="certificate.revoked", object_id=str(leaf.pk)).count() == 1


def test_hold_then_unhold(leaf):
    assert "put on hold" in run("revoke", leaf.serial, "--reason", "certificateHold")
    assert "valid again" in run("unhold", leaf.serial)
    leaf.refresh_from_db()
    assert leaf.revoked_at is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["revoke", "abc123", "--reason", "keyCompromise"], "no certificate with serial abc123"),
        (["revoke", "zz", "--reason", "keyCompromise"], "not a hexadecimal serial"),
        (["unhold", "abc123"], "no certificate"),
        (["revoke_key", "1234", "--reason", "keyCompromise"], "not a SHA-256 fingerprint"),
        (["publish_crl", "--ca", "nope"], "no CA named 'nope'"),
        (["publish_crl", "--ca", "issuing", "--shard", "5"], "has no CRL shard 5"),
        (["set_crl_shards", "--ca", "issuing", "0"], "between 1 and"),
    ],
)
def test_bad_input_is_one_line_error(issuing_ca, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_revoke_refuses_bad_reason_and_dates(leaf):
    with pytest.raises(CommandError):
        run("revoke", leaf.serial, "--reason", "removeFromCRL")
    with pytest.raises(CommandError, match="no time zone"):
        run("revoke", leaf.serial, "--reason", "superseded", "--invalidity-date", "2026-05-30T10:00:00")
    with pytest.raises(CommandError, match="future"):
        run("revoke", leaf.serial, "--reason", "superseded", "--invalidity-date", "2999-01-01T00:00:00Z")
    with pytest.raises(CommandError, match="not on hold"):
        run("unhold", leaf.serial)


def test_revoke_key_revokes_every_certificate_of_the_key(issuing_ca, profile, leaf):
    second = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    out = run("revoke_key", leaf.key_fingerprint.upper())
    assert "2 unexpired certificate(s)" in out
    for cert in (leaf, second):
        cert.refresh_from_db()
        assert cert.revocation_reason == "keyCompromise"


def test_revoke_key_marks_a_known_key_compromised(issuing_ca):
    run("revoke_key", issuing_ca.key.spki_sha256)
    assert Key.objects.get(pk=issuing_ca.key.pk).state == KeyState.COMPROMISED


def test_publish_crl_command_publishes_full_and_partitions(issuing_ca, leaf):
    out = run("set_crl_shards", "--ca", "issuing", "2")
    assert "2 CRL partitions" in out
    out = run("publish_crl", "--ca", "issuing")
    assert "published CRL 1 of CA issuing (http://pki.example.test/crl/issuing.crl): 0 entries" in out
    out = run("publish_crl", "--ca", "issuing", "--all")
    assert out.count("published CRL") == 3
    assert "issuing-2.crl" in out
    assert CertificateRevocationList.objects.filter(ca=issuing_ca, shard=2).count() == 1
    assert "full CRL" in run("set_crl_shards", "--ca", "issuing", "1")


def test_init_ca_sets_crl_shards(root_ca, profile):
    run(
        "init_ca",
        "--name",
        "sharded",
        "--parent",
        "root",
        "--subject",
        "CN=Sharded,O=KMI",
        "--crl-shards",
        "4",
    )
    ca = CertificateAuthority.objects.get(name="sharded")
    assert ca.crl_shards == 4
    cert = sign_csr(ca=ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    cdp = cert.x509().extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"http://pki.example.test/crl/sharded-{cert.crl_shard}.crl"
