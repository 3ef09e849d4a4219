"""CRL publication at scale: 10k, 100k and 1M revoked certificates in PostgreSQL.

The revoked rows are loaded with COPY; then ``publish_crl`` runs in a fresh process (so its
peak RSS is its own) and is timed end to end: reading the rows, encoding, signing with the CA
key through its KeyBackend, storing the CRL and committing. Targets from issue 3: 1M entries
in at most 5 s with peak memory under 1 GiB; 10k entries in at most 0.1 s.
Usage: ``make bench-crl`` (or ``python bench/crl.py --sizes 10000,1000000``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import create_cas, recreate_database  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_crl")
TARGETS = {10_000: 0.1, 100_000: 0.5, 1_000_000: 5.0}  # 100k: the 1M target pro rata
RSS_TARGET_MIB = 1024
REASONS = [
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
    "unspecified",
]


def _setup_env() -> None:
    os.environ["DATABASE_URL"] = BENCH_DB
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("KMI_CRL_DIR", None)
    os.environ.setdefault("KMI_KEK", "bench:" + base64.urlsafe_b64encode(b"c" * 32).decode())
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    os.environ["KMI_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def _load_rows(ca_id: int, n: int, now: dt.datetime) -> float:
    """Replace the CA's revoked certificates by ``n`` synthetic ones, loaded with COPY."""
    from django.db import connection

    rng = random.Random(n)
    nb = (now - dt.timedelta(days=30)).isoformat()
    na = (now + dt.timedelta(days=60)).isoformat()
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        # The synthetic rows of the previous size go; certificates are undeletable (migration 0017's
        # trigger) except with row triggers off, which the bench's superuser connection may do.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM pki_certificate WHERE ca_id = %s AND revoked_at IS NOT NULL", [ca_id])
        cursor.execute("SET session_replication_role = DEFAULT")
        raw = cursor.cursor
        columns = (
            "ca_id, serial, der, subject, san_text, not_before, not_after, fingerprint_sha256, "
            "key_fingerprint, is_ca, auto_renew, revoked_at, revocation_reason, invalidity_date, created_at, "
            "owner_email, owner_webhook_url"
        )
        with raw.copy(f"COPY pki_certificate ({columns}) FROM STDIN") as copy:
            buf: list[str] = []
            for i in range(n):
                serial = format(rng.getrandbits(128) | (1 << 100), "x")
                fp = hashlib.sha256(serial.encode()).hexdigest()
                revoked = (now - dt.timedelta(seconds=i % 2_000_000)).isoformat()
                reason = REASONS[i % len(REASONS)]
                invalid = (now - dt.timedelta(days=3, seconds=i % 1000)).isoformat() if i % 4 == 0 else r"\N"
                buf.append(
                    f"{ca_id}\t{serial}\t\\\\x\tCN=bench\t\t{nb}\t{na}\t{fp}\t{'0' * 64}\tf\tf\t"
                    f"{revoked}\t{reason}\t{invalid}\t{nb}\t\t\n"
                )
                if len(buf) >= 20000:
                    copy.write("".join(buf))
                    buf.clear()
            copy.write("".join(buf))
    # A live table's revoked rows are old and vacuumed; freshly loaded ones still need hint bits.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) pki_certificate")
    return time.perf_counter() - t0


def _publish_child(out: mp.Queue[tuple[float, float, float, int, int, int]]) -> None:
    _setup_env()
    import resource

    from pki.crl import publish_crl
    from pki.models import CertificateAuthority

    ca = CertificateAuthority.objects.select_related("key", "certificate").get(name="issuing")
    ca.key.public_key()  # load it outside the timed part, as a long-lived worker has it
    t0, c0 = time.perf_counter(), time.process_time()
    crl = publish_crl(ca=ca, actor="bench")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    publish_crl(ca=ca, actor="bench")  # again, as the next scheduled publication would
    again = time.perf_counter() - t1
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put((seconds, cpu, again, peak_kib, crl.entry_count, len(bytes(crl.der))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated entry counts")
    parser.add_argument("--key-type", default="ec-p256", help="issuing CA key type")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    recreate_database(BENCH_DB)
    try:
        _run(sizes, args.key_type)
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(BENCH_DB, create=False)  # leave the server as we found it


def _run(sizes: list[int], key_type: str) -> None:
    _setup_env()
    from cryptography import x509
    from django.core.management import call_command

    from pki.models import CertificateRevocationList

    call_command("migrate", verbosity=0)
    _root, ca = create_cas(key_type=key_type)
    now = dt.datetime.now(tz=dt.UTC)
    ctx = mp.get_context("spawn")
    results: list[str] = []
    for n in sizes:
        load = _load_rows(ca.pk, n, now)
        queue: mp.Queue[tuple[float, float, float, int, int, int]] = ctx.Queue()
        proc = ctx.Process(target=_publish_child, args=(queue,))
        proc.start()
        seconds, cpu, again, peak_kib, entries, size = queue.get()
        proc.join()
        latest = CertificateRevocationList.objects.filter(ca=ca).order_by("-crl_number").first()
        assert latest is not None
        parsed = x509.load_der_x509_crl(bytes(latest.der))
        assert parsed.is_signature_valid(ca.key.public_key())  # type: ignore[arg-type]
        assert entries == n, (entries, n)
        peak_mib = peak_kib / 1024
        label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}m"
        print(
            f"{n:>9} entries: loaded with COPY in {load:.1f} s; publish_crl {seconds:.3f} s "
            f"({cpu:.3f} s CPU in Python; {again:.3f} s the second time), peak RSS {peak_mib:.0f} MiB, "
            f"CRL {size / 1e6:.1f} MB, signature valid"
        )
        target = TARGETS.get(n, 5.0 * n / 1_000_000)
        verdict = "met" if seconds <= target else "missed"
        results.append(f"RESULT crl_{label}={seconds:.3f} s target={target:g} {verdict}")
        rss_verdict = "met" if peak_mib < RSS_TARGET_MIB else "missed"
        results.append(
            f"RESULT crl_{label}_peak_rss={peak_mib:.0f} MiB target={RSS_TARGET_MIB} {rss_verdict}"
        )
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
