"""create_log, sign_tree_head and verify_log: the CLI over the log's use cases; exit codes."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pki.enrollment import sign_csr
from pki.models import Certificate, TransparencyLog
from pki.tasks import BEAT_SCHEDULE
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_log_is_created_signed_and_verified_then_tampering_fails_verify_log(issuing_ca, profile):
    assert run("create_log", "kmi").startswith("log kmi: log_id ")
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    assert "kmi: tree_size 3 root " in run("sign_tree_head", "--log", "kmi")
    assert run("verify_log") == "kmi: 3 leaves, 2 tree heads: OK\n"
    der = bytearray(cert.der)
    der[40] ^= 0xFF
    Certificate.objects.filter(pk=cert.pk).update(der=bytes(der))
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 1 transparency logs are inconsistent"):
        call_command("verify_log", "--log", "kmi", stdout=out)
    assert "BROKEN kmi: entry 2: its leaf hash does not match its certificate" in out.getvalue()


def test_bad_names_are_refused_and_write_nothing(db):
    with pytest.raises(CommandError, match="not a log name"):
        run("create_log", "Not/A/Name")
    with pytest.raises(CommandError, match="no transparency log named nope"):
        run("verify_log", "--log", "nope")
    with pytest.raises(CommandError, match="maximum merge delay"):
        run("create_log", "kmi", "--mmd", "0")
    assert not TransparencyLog.objects.exists()


def test_the_beat_schedule_sequences_and_signs_every_few_seconds():
    entry = BEAT_SCHEDULE["transparency-tick"]
    assert entry["task"] == "pki.signing.transparency_tick"
    assert entry["schedule"] <= 15
