"""certmonger (Debian ``certmonger``) enrolls through KMI's SCEP with a one-time challenge: its
daemon on a private D-Bus session bus, ``getcert add-scep-ca`` then ``getcert request``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from pki.models import AuditEvent, Certificate, CertificateAuthority, Profile
from pki.scep.labels import create_scep_challenge, create_scep_label
from tests.interop.pkix import pkix_findings
from tests.support.devices import serve_kmi

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# ``getcert -s`` starts certmonger on the session bus by D-Bus activation: it inherits the bus
# daemon's environment, so HOME and XDG_CONFIG_HOME are set for dbus-run-session itself and its
# state lives in this test's folder (never in the user's ~/.config, where a CA nickname would
# outlive the test).
SCRIPT = """
set -eu
getcert add-scep-ca -s -c kmi-fleet -u "$KMI_URL/scep/fleet"
getcert request -s -c kmi-fleet -f "$PWD/cert.pem" -k "$PWD/key.pem" -N CN=cm-device -L "$CHALLENGE" -w
getcert list -s
"""


def test_certmonger_enrolls_with_a_one_time_challenge(
    root_ca: CertificateAuthority, issuing_ca: CertificateAuthority, tmp_path: Path
) -> None:
    label = create_scep_label(
        name="fleet", ca=issuing_ca, profile=Profile.objects.get(name="tls-client"), actor="test"
    )
    challenge = create_scep_challenge(label=label, actor="test")
    with serve_kmi(tmp_path, root=root_ca, issuing=issuing_ca, tls=False) as kmi:
        (kmi.work / "config").mkdir()
        done = subprocess.run(
            ["dbus-run-session", "--", "bash", "-c", SCRIPT],
            cwd=kmi.work,
            env={
                **kmi.env,
                "CHALLENGE": challenge,
                "HOME": str(kmi.work),
                "XDG_CONFIG_HOME": str(kmi.work / "config"),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: MONITORING" in done.stdout, done.stdout
    cert = x509.load_pem_x509_certificate((kmi.work / "cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=cm-device"
    assert pkix_findings(cert) == []
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    assert AuditEvent.objects.filter(
        action="certificate.issued", actor__startswith="scep:fleet/challenge:", object_id=str(row.pk)
    ).exists()
