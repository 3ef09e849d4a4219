"""docs/guide/scep.md run as written with micromdm's scepclient (Debian ``scep``) against gunicorn:
enroll with a one-time challenge, renew; and a request under an approval profile that the
client polls until an operator approves it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pki.enrollment import approve_and_issue
from pki.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Profile,
    ScepChallenge,
    ScepLabel,
)
from pki.revocation import revoke_certificate
from pki.scep.labels import create_scep_challenge, create_scep_label
from tests.interop.pkix import pkix_findings
from tests.support.devices import administrator_token, serve_kmi
from tests.support.docs import run_blocks, sh_blocks
from tests.support.processes import wait_for

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PAGE = "docs/guide/scep.md"
STEPS = ("Create a label and a challenge", "Enroll with scepclient", "Renew")


def _cert(path: Path) -> Certificate:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    assert pkix_findings(cert) == [], path.name
    return Certificate.objects.get(serial=format(cert.serial_number, "x"))


def test_scep_page_enrolls_and_renews_with_scepclient(
    root_ca: CertificateAuthority, issuing_ca: CertificateAuthority, tmp_path: Path
) -> None:
    with serve_kmi(tmp_path, root=root_ca, issuing=issuing_ca, tls=False) as kmi:
        blocks = [b for step in STEPS for b in sh_blocks(PAGE, under=step)]
        result = run_blocks(blocks, cwd=kmi.work, env=kmi.env)
    assert result.stdout.count(": OK") == 2
    first, renewed = _cert(kmi.work / "device-old.pem"), _cert(kmi.work / "device.pem")
    assert renewed.renewed_from == first
    assert AuditEvent.objects.filter(
        action="certificate.issued", actor__startswith="scep:demo/challenge:", object_id=str(first.pk)
    ).exists()
    assert AuditEvent.objects.filter(
        action="certificate.renewed", actor=f"scep:demo/cert:{first.fingerprint_sha256[:16]}"
    ).exists()
    revoke_certificate(certificate=renewed, reason="superseded", actor="test")


def test_scepclient_polls_a_request_until_it_is_approved(
    root_ca: CertificateAuthority, issuing_ca: CertificateAuthority, tmp_path: Path
) -> None:
    label = create_scep_label(
        name="signing", ca=issuing_ca, profile=Profile.objects.get(name="code-signing"), actor="test"
    )
    secret = create_scep_challenge(label=label, actor="test")
    ra = label.ra_certificate.x509().fingerprint(hashes.SHA256()).hex()
    with serve_kmi(tmp_path, root=root_ca, issuing=issuing_ca, tls=False) as kmi:
        device = subprocess.Popen(
            [
                "scepclient",
                "-server-url",
                f"{kmi.url}/scep/signing",
                "-challenge",
                secret,
                "-cn",
                "Build Robot",
                "-keySize",
                "3072",  # code-signing: RSA of 3072 bits at least
                "-private-key",
                "robot.key",
                "-certificate",
                "robot.pem",
                "-ca-fingerprint",
                ra,
            ],
            cwd=kmi.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            request = wait_for(
                lambda: CertificateRequest.objects.filter(
                    requested_by__startswith="scep:signing/challenge:", state="pending"
                ).first(),
                timeout=60,
                what="the pending SCEP request",
            )
            approve_and_issue(request=request, actor="ops")
            out, _ = device.communicate(timeout=90)  # scepclient polls every 30 s
        finally:
            if device.poll() is None:
                device.kill()
    assert device.returncode == 0, out
    assert "PENDING" in out
    robot = _cert(kmi.work / "robot.pem")
    assert robot.request == request


def test_scep_page_creates_a_label_and_a_challenge_over_the_api(
    root_ca: CertificateAuthority, issuing_ca: CertificateAuthority, tmp_path: Path
) -> None:
    token = administrator_token()
    with serve_kmi(tmp_path, root=root_ca, issuing=issuing_ca, tls=False) as kmi:
        blocks = sh_blocks(PAGE, under="Labels and challenges over the API")
        result = run_blocks(blocks, cwd=kmi.work, env={**kmi.env, "TOKEN": token})
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("/scep/phones")
    assert lines[1:] == ["false"]
    assert ScepLabel.objects.get(name="phones").enabled is False
    assert len((kmi.work / "phones-challenge.txt").read_text().strip()) >= 20
    assert ScepChallenge.objects.filter(label__name="phones").count() == 1
