"""Seed a benchmark database for ``bench/ocsp.sh``: a root and an issuing CA, certificates, and
their pre-signed OCSP responses (in PostgreSQL and Redis); write one OCSP request to a file.

Usage: ``python bench/ocsp_seed.py OUT_DIR`` with DATABASE_URL, REDIS_URL, KMI_KEK and
KMI_OCSP_REDIS_PREFIX set by the caller (bench/ocsp.sh sets them).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import create_cas, recreate_database  # noqa: E402 - needs ROOT on sys.path

CERTIFICATES = int(os.environ.get("BENCH_OCSP_CERTIFICATES", "300"))


def main(out: Path) -> None:
    """Create the CAs and certificates, pre-sign, and write the fixed request."""
    recreate_database(os.environ["DATABASE_URL"])
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    import django

    django.setup()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp
    from django.core.management import call_command

    from pki.enrollment import sign_csr
    from pki.models import Profile
    from pki.ocsp import presign_responses
    from pki.revocation import revoke_certificate
    from pki.x509.names import parse_subject

    call_command("migrate", verbosity=0)
    root, issuing = create_cas("bench-root", "bench-issuing", organization="KMI")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(parse_subject("CN=www.example.test"))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    profile = Profile.objects.get(name="tls-server")
    started = time.perf_counter()
    certs = [sign_csr(ca=issuing, profile=profile, csr=csr, actor="bench") for _ in range(CERTIFICATES)]
    for cert in certs[::10]:
        revoke_certificate(certificate=cert, reason="keyCompromise", actor="bench")
    issued = time.perf_counter()
    presigned = presign_responses(ca=issuing, actor="bench")
    done = time.perf_counter()
    print(
        f"seeded {len(certs)} certificates in {issued - started:.1f} s; "
        f"pre-signed {presigned} x 2 responses in {done - issued:.1f} s"
    )
    pem = serialization.Encoding.PEM
    (out / "root.pem").write_bytes(root.x509_certificate().public_bytes(pem))
    (out / "issuing.pem").write_bytes(issuing.x509_certificate().public_bytes(pem))
    (out / "leaf.pem").write_bytes(certs[1].x509().public_bytes(pem))
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certs[1].x509(), issuing.x509_certificate(), hashes.SHA1())
        .build()
    )
    (out / "request.der").write_bytes(request.public_bytes(serialization.Encoding.DER))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
