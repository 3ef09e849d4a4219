"""Issuance throughput: ``issue_certificate`` from pre-made EC P-256 CSRs against PostgreSQL.

Each certificate is committed durably (fsync on) with its audit event before the call returns.
Runs one process, then two processes at once, and prints certificates/s and p50/p99 latency
beside the targets of issue 2. Usage: ``make bench-issue`` (or ``python bench/issue.py -n 4000``).
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import create_cas, recreate_database, tls_csr  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench")
TARGET_ONE, TARGET_TWO = 800, 1500


def _setup_env() -> None:
    os.environ["DATABASE_URL"] = BENCH_DB
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("KMI_KEK", "bench:" + base64.urlsafe_b64encode(b"b" * 32).decode())
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    os.environ["KMI_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def _make_csrs(n: int) -> list[bytes]:
    from cryptography.hazmat.primitives import serialization

    return [tls_csr(f"host{i}.bench.example.test").public_bytes(serialization.Encoding.DER) for i in range(n)]


# CPU ms per certificate (Python + its PostgreSQL backend) of the last run, by process count.
last_cpu_ms: dict[int, float] = {}

Result = tuple[list[float], float, float, float, float]  # latencies, start, end, CPU here, CPU in PG


def _backend_cpu(pid: int) -> float:
    """User+system CPU seconds of a PostgreSQL backend (same machine), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(csrs: list[bytes], start: mp.synchronize.Event, out: mp.Queue[Result]) -> None:
    _setup_env()
    from django.db import connection

    from pki.issuance import issue_certificate
    from pki.models import CertificateAuthority, Profile

    ca = CertificateAuthority.objects.select_related("key", "certificate").get(name="issuing")
    profile = Profile.objects.get(name="tls-server")
    issue_certificate(ca=ca, profile=profile, csr=csrs[0], actor="bench")  # warm caches
    backend = connection.connection.info.backend_pid
    latencies = []
    start.wait()
    t0, cpu0, pg0 = time.perf_counter(), time.process_time(), _backend_cpu(backend)
    for der in csrs[1:]:
        s = time.perf_counter()
        issue_certificate(ca=ca, profile=profile, csr=der, actor="bench")
        latencies.append(time.perf_counter() - s)
    end = time.perf_counter()
    out.put((latencies, t0, end, time.process_time() - cpu0, _backend_cpu(backend) - pg0))


def _run(procs: int, per_proc: int, csrs: list[bytes]) -> tuple[float, list[float]]:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    out: mp.Queue[Result] = ctx.Queue()
    chunks = [csrs[i * (per_proc + 1) : (i + 1) * (per_proc + 1)] for i in range(procs)]
    workers = [ctx.Process(target=_worker, args=(chunk, start, out)) for chunk in chunks]
    for w in workers:
        w.start()
    time.sleep(3)  # let every process import Django, connect and warm up before the gun
    start.set()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    latencies = [lat for r in results for lat in r[0]]
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    # CPU per certificate does not depend on how busy the shared machine is.
    python_ms = sum(r[3] for r in results) / len(latencies) * 1000
    postgres_ms = sum(r[4] for r in results) / len(latencies) * 1000
    last_cpu_ms[procs] = python_ms + postgres_ms  # bench/log.py compares runs by CPU too
    print(
        f"{procs} process(es): CPU per certificate {python_ms:.2f} ms in Python, {postgres_ms:.2f} ms "
        f"in PostgreSQL -> about {procs * 1000 / (python_ms + postgres_ms):,.0f}/s on {procs} idle core(s)"
    )
    return len(latencies) / wall, latencies


def _report(name: str, rate: float, latencies: list[float], target: int) -> None:
    qs = statistics.quantiles(latencies, n=100)
    print(f"{name}: {rate:,.0f} certs/s, p50 {qs[49] * 1000:.2f} ms, p99 {qs[98] * 1000:.2f} ms")
    verdict = "met" if rate >= target else "missed"
    print(f"RESULT {name}={rate:.0f} certs/s target={target} {verdict}")


def main() -> None:
    """Set up a fresh bench database and CAs, then measure one and two processes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=4000, help="certificates per process")
    args = parser.parse_args()
    recreate_database(BENCH_DB)
    _setup_env()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    create_cas()
    print(f"making {3 * (args.n + 1)} EC P-256 CSRs…", flush=True)
    csrs = _make_csrs(3 * (args.n + 1))
    from django.db import connections

    connections.close_all()
    rate1, lat1 = _run(1, args.n, csrs[: args.n + 1])
    _report("issue_rate_1proc", rate1, lat1, TARGET_ONE)
    rate2, lat2 = _run(2, args.n, csrs[args.n + 1 :])
    _report("issue_rate_2proc", rate2, lat2, TARGET_TWO)
    connections.close_all()
    recreate_database(BENCH_DB, create=False)  # leave the server as we found it


if __name__ == "__main__":
    main()
