"""Console pages at a million certificates: server time of the dashboard, the certificate list, a
search and a certificate detail (PostgreSQL).

Loads bench/search.py's data set (N certificate rows by COPY: hostI.teamJ.example.test, a tenth
revoked), one real certificate issued through the use case (the detail page decodes its DER), a
published CRL and the workers' summary (``pki.health.refresh_summaries``, timed too). Then signs
in an auditor (who reads everything, like an administrator, without a TOTP step) and renders
each page in process through Django's test client, ``CALLS`` times: the median is the RESULT.

Issue 13 asks for each page in at most 150 ms server time at 1,000,000 certificates.
Usage: ``make bench-console`` or ``python bench/console.py [--rows 1000000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.search import load_rows, setup_env  # noqa: E402 - needs ROOT on sys.path
from bench.support import create_cas, recreate_database  # noqa: E402

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_console")
CALLS = 15
TARGET_MS = 150.0


def main() -> None:
    """Load, sign in, time the pages, print the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (to EXPLAIN by hand)")
    args = parser.parse_args()
    recreate_database(BENCH_DB)
    try:
        setup_env(BENCH_DB)
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client

        from pki import health
        from pki.access import grant_role
        from pki.crl import publish_crl
        from pki.enrollment import sign_csr
        from pki.models import Profile, Role

        call_command("migrate", verbosity=0)
        _root, ca = create_cas()
        profile = Profile.objects.get(name="tls-server")
        print(f"loading {args.rows:,} certificates…", flush=True)
        print(f"loaded in {load_rows(ca.pk, profile.pk, args.rows):.1f} s (COPY, indexes, VACUUM ANALYZE)")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "real.example.test")]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("real.example.test")]), critical=False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        real = sign_csr(ca=ca, profile=profile, csr=csr, actor="bench")
        t0 = time.perf_counter()
        publish_crl(ca=ca, actor="bench")
        print(f"CRL of {args.rows // 10:,} entries published in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        health.refresh_summaries()
        refresh = time.perf_counter() - t0
        health.beat(queue="celery")
        health.beat(queue="signing")
        print(f"summary recounted in {refresh:.2f} s (a worker does this every KMI_CONSOLE_SUMMARY_SECONDS)")
        print(f"RESULT console_summary_refresh={refresh:.2f} s target=- -")

        auditor = User.objects.create_user("bench-auditor")
        grant_role(user=auditor, role=Role.AUDITOR, actor="bench")
        client = Client(SERVER_NAME="pki.example.test")
        client.force_login(auditor)
        rare = args.rows // 2
        pages = {
            "dashboard": "/console/",
            "certificate_list": "/console/certificates/",
            "search": f"/console/certificates/?q=host{rare}.team{rare % 1000}.example",
            "search_common": "/console/certificates/?q=team7.example",
            "certificate_detail": f"/console/certificates/{real.pk}/",
        }
        for name, url in pages.items():
            times = []
            for _ in range(CALLS):
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code} {response.content[:300]!r}")
            median, worst = statistics.median(times), max(times)
            print(f"{name:>18}: median {median:7.2f} ms, worst {worst:7.2f} ms")
            verdict = "met" if median <= TARGET_MS else "missed"
            print(f"RESULT console_{name}={median:.2f} ms target={TARGET_MS:g} {verdict}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            recreate_database(BENCH_DB, create=False)  # leave the server as we found it


if __name__ == "__main__":
    main()
