"""The demo's device-enrollment labels (``bootstrap_demo``) and the client lines ``make run`` prints."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes

from pki.est.labels import create_enrollment_codes, create_est_label
from pki.models import CertificateAuthority, EstLabel, Profile, ScepLabel
from pki.scep.labels import create_scep_challenge, create_scep_label

DEMO_LABEL = "demo"
DEMO_PROFILE = "tls-client"
ACTOR = "system:bootstrap"


def ensure_demo_labels(issuing: CertificateAuthority) -> list[str]:
    """Create the EST and SCEP labels ``demo`` on ``issuing`` when missing; say what was done."""
    said = []
    profile = Profile.objects.get(name=DEMO_PROFILE)
    if EstLabel.objects.filter(name=DEMO_LABEL).exists():
        said.append(f"EST label present: {DEMO_LABEL}")
    else:
        create_est_label(
            name=DEMO_LABEL, ca=issuing, profile=profile, client_cas=[issuing], serverkeygen=True, actor=ACTOR
        )
        said.append(f"created EST label {DEMO_LABEL} (CA {issuing.name}, profile {DEMO_PROFILE})")
    if ScepLabel.objects.filter(name=DEMO_LABEL).exists():
        said.append(f"SCEP label present: {DEMO_LABEL}")
    else:
        create_scep_label(name=DEMO_LABEL, ca=issuing, profile=profile, actor=ACTOR)
        said.append(f"created SCEP label {DEMO_LABEL} (CA {issuing.name}, profile {DEMO_PROFILE})")
    return said


def client_lines(base: str, data_dir: Path) -> str:
    """One EST and one SCEP client command for the demo labels, each with a fresh one-time
    credential (empty when the labels do not exist)."""
    lines = ""
    est = EstLabel.objects.filter(name=DEMO_LABEL, enabled=True).first()
    if est is not None:
        code = create_enrollment_codes(label=est, actor=ACTOR)[0]
        lines += (
            f"  EST:        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            f"-keyout {data_dir}/est.key -subj /CN=device-1.example.test -outform DER | base64 | "
            f"curl -s -u {code.code_id}:{code.secret} -H 'Content-Type: application/pkcs10' --data-binary @- "
            f"{base}/.well-known/est/{DEMO_LABEL}/simpleenroll | base64 -d | "
            "openssl pkcs7 -inform DER -print_certs\n"
        )
    scep = ScepLabel.objects.filter(name=DEMO_LABEL, enabled=True).first()
    if scep is not None:
        challenge = create_scep_challenge(label=scep, actor=ACTOR)
        ra = scep.ra_certificate.x509().fingerprint(hashes.SHA256()).hex()
        lines += (
            f"  SCEP:       (cd $(mktemp -d) && scepclient -server-url {base}/scep/{DEMO_LABEL} "
            f"-challenge {challenge} -cn device-1 -private-key device.key -certificate device.pem "
            f"-ca-fingerprint {ra} && openssl x509 -in device.pem -noout -subject -issuer)\n"
        )
    return lines
