"""Lifecycle commands: issue_service_cert, run_lifecycle, import_certs (with its progress bar)."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.core.management.base import CommandError

from pki.models import AuditEvent, Certificate
from tests.support.certs import issue
from tests.support.tamper import triggers_off

pytestmark = pytest.mark.django_db


def _call(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_issue_service_cert_writes_key_and_chain_once(issuing_ca, tmp_path):
    out, _ = _call(
        "issue_service_cert", "--name", "kmi.example.test", "--out", str(tmp_path), "--ca", "issuing"
    )
    assert out.startswith("issued: ")
    assert (tmp_path / "kmi.example.test.crt").exists()
    assert (tmp_path / "kmi.example.test.key").exists()
    out, _ = _call(
        "issue_service_cert", "--name", "kmi.example.test", "--out", str(tmp_path), "--ca", "issuing"
    )
    assert out.startswith("current: ")


def test_issue_service_cert_without_names_says_what_to_give(issuing_ca):
    with pytest.raises(CommandError, match="give --name and --out"):
        _call("issue_service_cert")


def test_run_lifecycle_runs_the_chosen_jobs_here(issuing_ca):
    out, _ = _call("run_lifecycle", "--job", "expiry", "--job", "deactivate")
    assert 'expiry: {"due": 0, "sent": 0, "failed": 0, "abandoned": 0}' in out
    assert "deactivate: []" in out


def test_import_certs_records_what_the_ca_signed_and_refuses_the_rest(issuing_ca, root_ca, profile, tmp_path):
    certs = [issue(issuing_ca, profile, subject=f"CN=old{i}.example.test") for i in range(3)]
    bundle = b"".join(c.x509().public_bytes(serialization.Encoding.PEM) for c in certs)
    with triggers_off():  # as if signed before KMI (the database refuses to delete certificates)
        Certificate.objects.filter(pk__in=[c.pk for c in certs]).delete()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "bundle.pem").write_bytes(bundle)
    out, err = _call(
        "import_certs",
        "--ca",
        "issuing",
        "--owner-email",
        "ops@example.test",
        "--progress",
        "always",
        str(tmp_path / "old"),
    )
    assert "imported 3, already known 0, refused 0" in out
    assert "importing: 100%" in err
    imported = Certificate.objects.filter(ca=issuing_ca, is_ca=False)
    assert sorted(imported.values_list("serial", flat=True)) == sorted(c.serial for c in certs)
    assert set(imported.values_list("owner_email", flat=True)) == {"ops@example.test"}
    assert AuditEvent.objects.filter(action="certificate.imported").count() == 3

    out, _ = _call(
        "import_certs", "--ca", "issuing", "--progress", "never", str(tmp_path / "old" / "bundle.pem")
    )
    assert "imported 0, already known 3" in out

    foreign = tmp_path / "root.pem"
    foreign.write_bytes(root_ca.x509_certificate().public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CommandError, match="1 certificate\\(s\\) refused"):
        _call("import_certs", "--ca", "issuing", "--progress", "never", str(foreign))


def test_import_certs_refuses_files_that_are_not_pem(issuing_ca, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate")
    with pytest.raises(CommandError, match="not PEM certificates"):
        _call("import_certs", "--ca", "issuing", str(junk))
    with pytest.raises(CommandError, match="no such file"):
        _call("import_certs", "--ca", "issuing", str(tmp_path / "missing.pem"))
