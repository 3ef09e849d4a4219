"""Issuance through the signing seam with KMI_SIGNING=worker: a real signer worker on Redis.

Measures what an API client waits for when web processes hold no KEK: submit a request in
this process, then ``run_signing("issue_request")`` round-trips through the ``signing`` queue.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/kmi_bench \\
        BENCH_REDIS_URL=redis://127.0.0.1:6379/0 python bench/signing.py

The database is migrated and gets a bench CA; Redis keys live under a prefix deleted at the end.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PREFIX = f"kmi-bench-{uuid.uuid4().hex[:8]}:"
KEK = "bench-1:YmVuY2gta2VrLTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU="  # a fixed bench-only KEK
DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench")
REDIS = os.environ.get("BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
N = int(os.environ.get("BENCH_N", "300"))
TARGET_P50_MS = 50.0
TARGET_RATE = 100.0


def main() -> int:
    """Run the benchmark and print RESULT lines."""
    common = {
        "DJANGO_SETTINGS_MODULE": "web.settings",
        "DATABASE_URL": DB,
        "REDIS_URL": REDIS,
        "KMI_REDIS_KEY_PREFIX": PREFIX,
        "KMI_CACHE_PREFIX": PREFIX,
        "KMI_OCSP_REDIS_PREFIX": f"{PREFIX}ocsp",  # pre-signed OCSP responses go under the prefix too
        "KMI_BASE_URL": "http://pki.example.test",
        "KMI_LOG_LEVEL": "WARNING",
        # The signing channel's MAC key, shared by this web side and the signer (bench only).
        "KMI_SIGNING_SECRET": "bench-signing-secret-0123456789abcdef-not-for-production",
    }
    os.environ.update(common, KMI_SIGNING="worker")
    os.environ.pop("KMI_KEK", None)
    os.environ.pop("KMI_KEK_FILE", None)
    import psycopg

    admin = DB.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        name = DB.rsplit("/", 1)[1]
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    signer_env = {**os.environ, **common, "KMI_KEK": KEK, "KMI_SIGNING": "inprocess", "PYTHONPATH": str(ROOT)}
    bin_dir = Path(sys.executable).parent
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=signer_env, cwd=ROOT, check=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.core.management import call_command; "
            "from pki.models import CertificateAuthority as C; C.objects.filter(name='bench').exists() or "
            "call_command('init_ca', name='bench', subject='CN=Bench CA', key_type='ec-p256')",
        ],
        env=signer_env,
        cwd=ROOT,
        check=True,
    )
    signer = subprocess.Popen(
        [
            str(bin_dir / "celery"),
            "-A",
            "web",
            "worker",
            "-Q",
            "signing",
            "-c",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"bench-{PREFIX}@%h",
        ],
        env=signer_env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        import django

        django.setup()
        from django.db import connection

        from pki.issuance import submit_request
        from pki.models import CertificateAuthority, Profile
        from pki.signing import run_signing
        from tests.conftest import make_csr

        ca = CertificateAuthority.objects.get(name="bench")
        profile = Profile.objects.get(name="tls-server")
        csr = make_csr()

        def one() -> float:
            request = submit_request(ca=ca, profile=profile, csr=csr, actor="bench")
            t0 = time.perf_counter()
            run_signing("issue_request", request_id=request.pk, actor="bench")
            connection.close()
            return time.perf_counter() - t0

        one()  # warm: the worker loads the CA key once
        latencies = [one() for _ in range(N // 3)]
        p50 = statistics.median(latencies) * 1000
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda _: one(), range(N)))
            rate = N / (time.perf_counter() - t0)
    finally:
        signer.terminate()
        signer.wait(timeout=30)
        import redis

        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{PREFIX}*"))
        if keys:
            client.delete(*keys)
        connection.close()
        with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # leave PostgreSQL as found
    p50_met = "met" if p50 <= TARGET_P50_MS else "missed"
    rate_met = "met" if rate >= TARGET_RATE else "missed"
    print(f"RESULT signing_worker_p50={p50:.1f} ms target={TARGET_P50_MS:g} {p50_met}")
    print(f"RESULT signing_worker_rate={rate:.0f} certs/s target={TARGET_RATE:g} {rate_met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
