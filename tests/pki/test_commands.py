"""The management commands: thin CLI over the use cases, one-line errors, exit codes."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from cryptography import x509
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from pki.enrollment import sign_csr
from pki.models import AuditEvent, Certificate, CertificateRequest, RequestState, SealedKey
from pki.revocation import revoke_certificate
from tests.conftest import FIXTURES, NOW, kek_line, make_csr
from tests.support.tamper import owner_sql

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
CSRS = FIXTURES / "csrs"
# Commands read the real clock; freeze it an hour after the fixtures' CAs were made.
CLOCK = NOW + dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(CLOCK, tick=False):
        yield


class TTY(io.StringIO):
    """A terminal stand-in: what a person sees when running the command interactively."""

    def isatty(self) -> bool:
        return True


def run(*args: str, stdin: bytes | None = None, stdout: io.StringIO | None = None) -> tuple[str, str]:
    """Run a command in-process; return (stdout, stderr)."""
    out, err = stdout or io.StringIO(), io.StringIO()
    extra = {"stdin": io.BytesIO(stdin)} if stdin is not None else {}
    call_command(*args, stdout=out, stderr=err, **extra)
    return out.getvalue(), err.getvalue()


def counts() -> tuple[int, int, int]:
    return Certificate.objects.count(), CertificateRequest.objects.count(), AuditEvent.objects.count()


def load_pems(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


# --- sign_csr -----------------------------------------------------------------------------------
def test_sign_csr_writes_certificate_and_chain(issuing_ca, tmp_path):
    out, _ = run(
        "sign_csr",
        "--ca=issuing",
        "--profile=tls-server",
        f"--csr={CSRS / 'ec-p256.pem'}",
        f"--out={tmp_path / 'cert.pem'}",
        f"--chain-out={tmp_path / 'chain.pem'}",
    )
    [cert] = load_pems(tmp_path / "cert.pem")
    chain = load_pems(tmp_path / "chain.pem")
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=KMI Issuing CA,O=KMI",
        "CN=KMI Test Root,O=KMI",
    ]
    row = Certificate.objects.get(ca=issuing_ca, serial=format(cert.serial_number, "x"))
    assert row.profile is not None
    assert row.profile.name == "tls-server"
    assert f"serial {row.serial}" in out
    assert "under profile tls-server" in out
    assert str(tmp_path / "chain.pem") in out


@pytest.mark.parametrize("csr_name", ["ed25519", "rsa-2048"])
def test_sign_csr_reads_stdin_and_prints_pem(issuing_ca, csr_name):
    out, err = run(
        "sign_csr",
        "--ca=issuing",
        "--profile=tls-client",
        "--csr=-",
        "--validity-days=30",
        stdin=(CSRS / f"{csr_name}.pem").read_bytes(),
    )
    [cert] = x509.load_pem_x509_certificates(out.encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30, seconds=-1)
    assert "issued under profile tls-client" in err  # the report keeps out of the PEM on stdout


def test_sign_csr_with_unknown_ca_names_the_known_ones(issuing_ca):
    before = counts()
    with pytest.raises(CommandError, match=r"no CA named 'nope' \(known: issuing, root\)"):
        run("sign_csr", "--ca=nope", "--profile=tls-server", f"--csr={CSRS / 'ec-p256.pem'}")
    assert counts() == before


def test_sign_csr_with_missing_file_says_so(issuing_ca, tmp_path):
    with pytest.raises(CommandError, match=r"cannot read CSR .*missing.pem: No such file"):
        run("sign_csr", "--ca=issuing", "--profile=tls-server", f"--csr={tmp_path / 'missing.pem'}")


def test_sign_csr_past_the_cap_is_refused_and_writes_nothing(issuing_ca, tmp_path):
    before = counts()
    with pytest.raises(CommandError, match="exceeds profile tls-server's cap of 397"):
        run(
            "sign_csr",
            "--ca=issuing",
            "--profile=tls-server",
            f"--csr={CSRS / 'ec-p256.pem'}",
            "--validity-days=400",
            f"--out={tmp_path / 'cert.pem'}",
        )
    assert counts() == before
    assert not (tmp_path / "cert.pem").exists()


# --- submit / approve / reject ------------------------------------------------------------------
def test_submit_csr_under_an_auto_approving_profile_issues_at_once(issuing_ca, tmp_path):
    out, _ = run(
        "submit_csr",
        "--ca=issuing",
        "--profile=tls-client",
        f"--csr={CSRS / 'ec-p256.pem'}",
        f"--out={tmp_path / 'c.pem'}",
    )
    request = CertificateRequest.objects.get()
    assert request.state == RequestState.ISSUED
    assert out.startswith(f"request {request.pk}: issued; serial ")
    assert load_pems(tmp_path / "c.pem")


def code_signing_csr() -> bytes:
    return make_csr("rsa-3072", subject="CN=Release Signing,O=KMI")


def test_code_signing_request_waits_then_approval_issues_it(issuing_ca, tmp_path):
    out, _ = run("submit_csr", "--ca=issuing", "--profile=code-signing", "--csr=-", stdin=code_signing_csr())
    request = CertificateRequest.objects.get()
    assert request.state == RequestState.PENDING
    assert out.splitlines() == [
        f"request {request.pk}: pending (CN=Release Signing,O=KMI)",
        f"an operator approves it with: manage.py approve_request {request.pk}",
    ]
    assert not Certificate.objects.filter(request=request).exists()

    out, _ = run("approve_request", str(request.pk), f"--out={tmp_path / 'signing.pem'}")
    request.refresh_from_db()
    assert request.state == RequestState.ISSUED
    assert request.reviewed_by.startswith("cli:")
    assert out.splitlines()[0] == f"request {request.pk}: approved"
    assert f"request {request.pk}: issued serial {request.certificate.serial}" in out
    assert load_pems(tmp_path / "signing.pem")[0].subject.rfc4514_string() == "CN=Release Signing,O=KMI"


def test_approve_only_then_approve_again_issues_the_approved_request(issuing_ca):
    run("submit_csr", "--ca=issuing", "--profile=tls-client", "--csr=-", "--no-issue", stdin=make_csr())
    request = CertificateRequest.objects.get()
    assert request.state == RequestState.APPROVED
    run("approve_request", str(request.pk))
    request.refresh_from_db()
    assert request.state == RequestState.ISSUED


def test_reject_request_records_the_reason_and_cannot_repeat(issuing_ca):
    run("submit_csr", "--ca=issuing", "--profile=code-signing", "--csr=-", stdin=code_signing_csr())
    request = CertificateRequest.objects.get()
    out, _ = run("reject_request", str(request.pk), "--reason", "not a release key")
    assert out == f"request {request.pk}: rejected (not a release key)\n"
    request.refresh_from_db()
    assert (request.state, request.reason) == (RequestState.REJECTED, "not a release key")
    with pytest.raises(CommandError, match=f"request {request.pk} is rejected, not pending"):
        run("approve_request", str(request.pk))
    with pytest.raises(CommandError, match="a rejection needs a reason"):
        run("reject_request", str(request.pk), "--reason", "  ")


def test_unknown_request_id_is_not_found(db):
    with pytest.raises(CommandError, match="no certificate request with id 999"):
        run("approve_request", "999")
    with pytest.raises(CommandError, match="request id 'x1' is not a number"):
        run("reject_request", "x1", "--reason", "r")


# --- list / show --------------------------------------------------------------------------------
@pytest.fixture
def leaf(issuing_ca, profile):
    return sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=CLOCK)


def test_list_certs_prints_a_table_with_status(leaf):
    out, _ = run("list_certs")
    lines = out.splitlines()
    assert lines[0].split() == ["SERIAL", "SUBJECT", "CA", "NOT", "AFTER", "(UTC)", "STATUS"]
    row = next(line for line in lines if line.startswith(leaf.serial))
    assert row.split()[1:] == [
        "CN=www.example.test",
        "issuing",
        f"{leaf.not_after:%Y-%m-%d}",
        f"{leaf.not_after:%H:%M}",
        "valid",
    ]
    assert lines[-1] == "3 certificates"  # root, issuing, leaf


def test_list_certs_filters_by_ca_expiry_and_revocation(leaf, issuing_ca):
    out, _ = run("list_certs", "--ca=issuing")
    assert out.splitlines()[-1] == "1 certificate"
    # The leaf lives 90 days: outside a 30-day window today, inside it 70 days on.
    assert run("list_certs", "--expiring-days=30")[0] == "no certificates match\n"
    with time_machine.travel(CLOCK + dt.timedelta(days=70), tick=False):
        assert leaf.serial in run("list_certs", "--expiring-days=30")[0]
    assert run("list_certs", "--revoked")[0] == "no certificates match\n"
    revoke_certificate(certificate=leaf, reason="keyCompromise", actor="t", now=CLOCK)
    out, _ = run("list_certs", "--revoked")
    assert leaf.serial in out
    assert "revoked (keyCompromise)" in out


def test_list_certs_refuses_a_negative_window(db):
    with pytest.raises(CommandError, match="--expiring-days must not be negative"):
        run("list_certs", "--expiring-days=-1")


def colon_form(serial: str) -> str:
    padded = serial if len(serial) % 2 == 0 else "0" + serial
    return ":".join(padded[i : i + 2] for i in range(0, len(padded), 2)).upper()


@pytest.mark.parametrize("form", [colon_form, lambda s: "0x" + s.upper(), lambda s: s])
def test_show_cert_accepts_every_serial_form(leaf, form):
    out, _ = run("show_cert", form(leaf.serial))
    fields = dict(
        line.split(None, 1) if "  " not in line else line.split("  ", 1) for line in out.splitlines()
    )
    assert fields["subject"].strip() == "CN=www.example.test"
    assert fields["SANs"].strip() == "dns:www.example.test"
    assert fields["issuing CA"].strip() == "issuing"
    assert fields["profile"].strip() == "tls-server"
    assert fields["status"].strip() == "valid"
    assert leaf.fingerprint_sha256.upper() in out.replace(":", "")
    assert "http://pki.example.test/crl/issuing.crl" in out


def test_show_cert_shows_revocation_and_pem(leaf):
    revoke_certificate(certificate=leaf, reason="superseded", actor="t", now=CLOCK)
    out, _ = run("show_cert", leaf.serial, "--pem")
    assert "status              revoked" in out
    assert f"revocation          superseded at {CLOCK:%Y-%m-%d %H:%M:%S}Z" in out
    assert (
        x509.load_pem_x509_certificate(out[out.index("-----BEGIN") :].encode()).serial_number
        == leaf.serial_int
    )


def test_show_cert_of_a_ca_certificate_names_the_ca(issuing_ca):
    out, _ = run("show_cert", issuing_ca.own_certificate().serial)
    assert "certificate of CA   issuing" in out
    assert "(none: CA certificate)" in out


def test_show_cert_asks_for_ca_when_two_cas_issued_the_serial(leaf, issuing_ca):
    # The root issued the issuing CA's certificate; give it the leaf's serial.
    Certificate.objects.filter(pk=issuing_ca.certificate_id).update(serial=leaf.serial)
    with pytest.raises(
        CommandError, match=rf"serial {leaf.serial} was issued by several CAs \(issuing, root\)"
    ):
        run("show_cert", leaf.serial)
    assert "CN=www.example.test" in run("show_cert", leaf.serial, "--ca=issuing")[0]


def test_show_cert_unknown_or_malformed_serial(leaf):
    with pytest.raises(CommandError, match="no certificate with serial abc issued by CA issuing"):
        run("show_cert", "abc", "--ca=issuing")
    with pytest.raises(CommandError, match="'xyz' is not a hexadecimal serial number"):
        run("show_cert", "xyz")


# --- renew --------------------------------------------------------------------------------------
def test_renew_cert_keeps_the_key_and_links_the_old_certificate(leaf, tmp_path):
    out, _ = run("renew_cert", colon_form(leaf.serial), f"--out={tmp_path / 'new.pem'}")
    [new] = load_pems(tmp_path / "new.pem")
    row = Certificate.objects.get(serial=format(new.serial_number, "x"))
    assert row.renewed_from == leaf
    assert row.key_fingerprint == leaf.key_fingerprint
    assert out.startswith(f"renewed {leaf.serial} as serial {row.serial}")
    assert out.rstrip().endswith("with the same key")


def test_renew_cert_with_a_csr_moves_to_the_new_key(leaf, tmp_path):
    (tmp_path / "new.csr").write_bytes(make_csr("ec-p256-b"))
    out, _ = run(
        "renew_cert",
        leaf.serial,
        f"--csr={tmp_path / 'new.csr'}",
        f"--out={tmp_path / 'new.pem'}",
        f"--chain-out={tmp_path / 'chain.pem'}",
    )
    [new] = load_pems(tmp_path / "new.pem")
    assert new.public_key() != leaf.x509().public_key()
    assert len(load_pems(tmp_path / "chain.pem")) == 2
    assert "with a new key" in out


def test_renew_cert_refuses_a_revoked_certificate(leaf):
    revoke_certificate(certificate=leaf, reason="keyCompromise", actor="t", now=CLOCK)
    before = counts()
    with pytest.raises(CommandError, match=f"certificate {leaf.serial} is revoked"):
        run("renew_cert", leaf.serial)
    assert counts() == before


# --- export_ca ----------------------------------------------------------------------------------
def test_export_ca_writes_pem_chain_and_der(issuing_ca, tmp_path):
    out, _ = run("export_ca", "issuing", f"--out={tmp_path / 'i.pem'}")
    assert load_pems(tmp_path / "i.pem") == [issuing_ca.x509_certificate()]
    assert out == f"wrote CA issuing's certificate (PEM) to {tmp_path / 'i.pem'}\n"
    run("export_ca", "issuing", "--chain", f"--out={tmp_path / 'chain.pem'}")
    assert len(load_pems(tmp_path / "chain.pem")) == 2
    run("export_ca", "issuing", "--der", f"--out={tmp_path / 'i.cer'}")
    assert x509.load_der_x509_certificate((tmp_path / "i.cer").read_bytes()) == issuing_ca.x509_certificate()
    pem, _ = run("export_ca", "root")
    assert x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string() == "CN=KMI Test Root,O=KMI"


def test_export_ca_refuses_der_chain_and_der_on_stdout(issuing_ca, tmp_path):
    with pytest.raises(CommandError, match="DER holds one certificate"):
        run("export_ca", "issuing", "--der", "--chain", f"--out={tmp_path / 'x'}")
    with pytest.raises(CommandError, match="DER is binary: give --out FILE"):
        run("export_ca", "issuing", "--der")
    with pytest.raises(CommandError, match="no CA named 'other'"):
        run("export_ca", "other")


# --- verify_audit -------------------------------------------------------------------------------
def test_verify_audit_reports_ok_then_the_broken_link(leaf):
    out, _ = run("verify_audit")
    events = AuditEvent.objects.count()
    assert out.endswith(" events: OK (0 checkpoints)\n")
    assert f" {events} events" in out
    victim = AuditEvent.objects.filter(action="certificate.issued").order_by("id").last()
    owner_sql("UPDATE pki_auditevent SET actor = 'mallory' WHERE id = %s", [victim.pk])
    stdout = io.StringIO()
    with pytest.raises(CommandError, match=r"audit trail broken: 1 problem \(\d+ streams"):
        run("verify_audit", stdout=stdout)
    assert stdout.getvalue() == (
        "note: no checkpoint yet: run `manage.py checkpoint_audit`\n"
        f"BROKEN {victim.stream} at seq {victim.seq} (event id {victim.pk}): event was altered\n"
    )


# --- rewrap_keys --------------------------------------------------------------------------------
def test_rewrap_keys_moves_every_key_to_the_new_kek(issuing_ca, use_keks, settings):
    old = settings.KMI["KEK"]
    use_keks(old, kek_line("test-2", b"second"))
    terminal = TTY()
    out, _ = run("rewrap_keys", stdout=terminal)
    assert "re-wrapping: 100%" in out  # a progress bar on a terminal
    assert "re-wrapped 2 keys under KEK test-2" in out
    assert set(SealedKey.objects.values_list("kek_id", flat=True)) == {"test-2"}
    out, _ = run("rewrap_keys")  # not a terminal: no bar; nothing left to do
    assert out == "re-wrapped 0 keys under KEK test-2\n"


def test_rewrap_keys_without_the_old_kek_names_it(issuing_ca, use_keks):
    use_keks(kek_line("test-2", b"second"))
    with pytest.raises(CommandError, match=r"KEK 'test-1' is not configured \(known: test-2\)"):
        run("rewrap_keys")
    assert set(SealedKey.objects.values_list("kek_id", flat=True)) == {"test-1"}


# --- through manage.py, as a person runs them ---------------------------------------------------
def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python manage.py ARGS`` against this test's database (its committed state)."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_manage_py_failure_is_one_line_and_exit_1():
    result = manage("sign_csr", "--ca=nowhere", "--profile=tls-server", f"--csr={CSRS / 'ec-p256.pem'}")
    assert result.returncode == 1
    assert result.stderr == "CommandError: no CA named 'nowhere' (known: none)\n"
    result = manage("show_cert", "0xZZ")
    assert (result.returncode, result.stderr) == (
        1,
        "CommandError: '0xZZ' is not a hexadecimal serial number\n",
    )


def test_manage_py_verify_audit_on_an_empty_trail_is_ok():
    result = manage("verify_audit")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "0 streams, 0 events: OK (0 checkpoints)\n",
        "",
    )


# --- create_kek and init_ca ---------------------------------------------------------------------
def test_create_kek_creates_then_extends_a_private_file(tmp_path):
    path = tmp_path / "var" / "kek"
    out, _ = run("create_kek", f"--out={path}", "--id=first")
    assert out == f"created KEK file with KEK first in {path}; use KMI_KEK_FILE={path}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    out, _ = run("create_kek", f"--out={path}")
    assert out.startswith("added new current KEK kek-")
    assert "rewrap_keys" in out
    from pki.conf import parse_kek_lines

    keks = parse_kek_lines(path.read_text(), source="test")
    assert next(iter(keks)) == "first"
    assert len(keks) == 2
    with pytest.raises(CommandError, match="KEK id 'first' already exists"):
        run("create_kek", f"--out={path}", "--id=first")


def test_init_ca_creates_a_root_and_a_constrained_intermediate(db):
    out, _ = run("init_ca", "--name=r", "--subject=CN=R,O=KMI", "--key-type=ed25519", "--validity-days=30")
    assert out.startswith("created root CA r: CN=R,O=KMI, serial ")
    assert ", ed25519, valid until " in out
    out, _ = run(
        "init_ca",
        "--name=i",
        "--parent=r",
        "--subject=CN=I,O=KMI",
        "--path-length=0",
        "--permit=dns:example.test",
        "--exclude=dns:secret.example.test",
    )
    assert out.startswith("created intermediate CA i under r: CN=I,O=KMI")
    from pki.models import CertificateAuthority

    ca = CertificateAuthority.objects.get(name="i")
    assert ca.name_constraints == {"permitted": ["dns:example.test"], "excluded": ["dns:secret.example.test"]}
    assert ca.path_length == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name=x", "--parent=missing", "--subject=CN=X"], "no CA named 'missing'"),
        (["--name=x", "--subject=not a dn"], "is not an RFC 4514 name"),
        (["--name=X Y", "--subject=CN=X"], "must be 1-63 lower-case letters"),
        (["--name=x", "--subject=CN=X", "--permit=dns:*.example.test"], "wildcard"),
    ],
)
def test_init_ca_failures_are_one_line(db, args, message):
    before = counts()
    with pytest.raises(CommandError, match=message):
        run("init_ca", *args)
    assert counts() == before
