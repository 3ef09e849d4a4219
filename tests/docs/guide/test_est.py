"""docs/guide/est.md: the operator's and the device's commands, run as written (curl + openssl)
against gunicorn terminating TLS with KMI's client-certificate worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from pki.models import AuditEvent, Certificate, CertificateAuthority, EnrollmentCode, EstLabel
from pki.revocation import revoke_certificate
from tests.interop.pkix import pkix_findings
from tests.support.devices import administrator_token, serve_kmi
from tests.support.docs import run_blocks, sh_blocks

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PAGE = "docs/guide/est.md"
STEPS = (
    "Create a label and enrollment codes",
    "Fetch the CA certificates",
    "Enroll with an enrollment code",
    "Re-enroll with the current certificate",
    "Let KMI make the key",
)


def test_est_page_enrolls_reenrolls_and_makes_keys_with_curl_and_openssl(
    root_ca: CertificateAuthority, issuing_ca: CertificateAuthority, tmp_path: Path
) -> None:
    with serve_kmi(tmp_path, root=root_ca, issuing=issuing_ca, tls=True) as kmi:
        blocks = [b for step in STEPS for b in sh_blocks(PAGE, under=step)]
        result = run_blocks(blocks, cwd=kmi.work, env=kmi.env)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("created EST label demo: ")
    assert lines[1] == "2"  # cacerts: the issuing CA and its root
    assert lines[2:] == ["device.pem: OK", "device-new.pem: OK", "made.pem: OK"]
    issued = {}
    for name in ("device", "device-new", "made"):
        cert = x509.load_pem_x509_certificate((kmi.work / f"{name}.pem").read_bytes())
        assert pkix_findings(cert) == [], name
        issued[name] = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    code_id = (kmi.work / "code.txt").read_text().split()[0]
    assert AuditEvent.objects.filter(
        action="certificate.issued", actor=f"est:demo/code:{code_id}", object_id=str(issued["device"].pk)
    ).exists()
    renewed = AuditEvent.objects.get(action="certificate.renewed", object_id=str(issued["device-new"].pk))
    assert renewed.actor == f"est:demo/cert:{issued['device'].fingerprint_sha256[:16]}"
    assert issued["device-new"].renewed_from == issued["device"]
    revoke_certificate(certificate=issued["made"], reason="keyCompromise", actor="test")


def test_est_page_creates_a_label_and_codes_over_the_api(
    root_ca: CertificateAuthority, issuing_ca: CertificateAuthority, tmp_path: Path
) -> None:
    token = administrator_token()
    with serve_kmi(tmp_path, root=root_ca, issuing=issuing_ca, tls=True) as kmi:
        blocks = sh_blocks(PAGE, under="Labels and codes over the API")
        result = run_blocks(blocks, cwd=kmi.work, env={**kmi.env, "TOKEN": token})
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("/.well-known/est/fleet/")
    assert lines[1:] == ["2", "false"]
    assert EstLabel.objects.get(name="fleet").enabled is False
    code_ids = [line.split()[0] for line in (kmi.work / "fleet-codes.txt").read_text().splitlines()]
    assert EnrollmentCode.objects.filter(pk__in=code_ids, label__name="fleet").count() == 2
    assert AuditEvent.objects.filter(action="est.codes_created", actor__startswith="alice").exists()
