"""What the benchmarks share: their own database, and a root and an issuing CA in it; for the
HTTP benchmarks (gunicorn driven by wrk) the server's environment, its start, wrk's summary and
the CPU the server and PostgreSQL spent.

Every benchmark works in a database of its own, created empty at the start and dropped at the
end, so the PostgreSQL server is left as the benchmark found it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

    from pki.models import CertificateAuthority

ROOT = Path(__file__).resolve().parent.parent

# Ends every wrk script: one line ``WRKJSON {...}`` that ``run_wrk`` reads.
WRK_SUMMARY = r"""
function done(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"non2xx\": %d, \"socket_errors\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


def recreate_database(url: str, *, create: bool = True) -> None:
    """Drop the database ``url`` names (closing its sessions) and, unless ``create`` is False,
    create it again empty."""
    import psycopg

    url = url.replace("postgres://", "postgresql://", 1)
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def create_cas(
    root: str = "root",
    issuing: str = "issuing",
    *,
    key_type: str = "ec-p256",
    organization: str = "",
) -> tuple[CertificateAuthority, CertificateAuthority]:
    """A root CA and an issuing CA under it (path length 0), in the configured database."""
    from pki.authorities import create_intermediate_ca, create_root_ca
    from pki.x509.names import parse_subject

    suffix = f",O={organization}" if organization else ""
    root_ca = create_root_ca(
        name=root, subject=parse_subject(f"CN=Bench Root{suffix}"), key_type=key_type, actor="bench"
    )
    issuing_ca = create_intermediate_ca(
        name=issuing,
        parent=root_ca,
        subject=parse_subject(f"CN=Bench Issuing CA{suffix}"),
        key_type=key_type,
        path_length=0,
        actor="bench",
    )
    return root_ca, issuing_ca


def tls_csr(name: str) -> x509.CertificateSigningRequest:
    """A CSR for ``name`` (CN and DNS SAN) with a fresh EC P-256 key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def server_environment(*, database_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's KMI processes: its own database, and its Redis keys
    (cache, Celery's queues and bindings, OCSP) under ``prefix``."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "KMI_CACHE_PREFIX": prefix,
            "KMI_REDIS_KEY_PREFIX": f"{prefix}:",
            "KMI_OCSP_REDIS_PREFIX": f"{prefix}:ocsp",
            "KMI_KEK": env.get("BENCH_KEK", "bench:" + base64.urlsafe_b64encode(b"a" * 32).decode()),
            "DJANGO_SETTINGS_MODULE": "web.settings",
            "KMI_LOG_LEVEL": "WARNING",
            "KMI_BASE_URL": "http://pki.example.test",
            "KMI_DB_CONN_MAX_AGE": "600",
            **extra,
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py ARGS`` with ``env``; return its standard output."""
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def count_certificates(env: dict[str, str]) -> int:
    """End-entity certificates in the benchmark's database."""
    code = "from pki.models import Certificate; print(Certificate.objects.filter(is_ca=False).count())"
    return int(manage(env, "shell", "-c", code).strip().splitlines()[-1])


def start_gunicorn(
    env: dict[str, str], *, port: int, workers: int, ready_path: str, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start ``gunicorn web.wsgi`` on ``port`` and wait until ``ready_path`` answers (any status)."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [
            gunicorn,
            "web.wsgi",
            "-w",
            str(workers),
            *extra,
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2):
                return proc
        except urllib.error.HTTPError:
            return proc  # it answered
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start")


def run_wrk(
    script: Path,
    *,
    port: int,
    seconds: int,
    connections: int,
    args: tuple[str, ...],
    env: dict[str, str] | None = None,
) -> dict[str, int]:
    """Run wrk (one thread) with ``script`` (ending in ``WRK_SUMMARY``) and return its summary."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            *args,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if match is None:
        raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(match.group(1)))


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU time of these processes (from /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (gunicorn's workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def postgres_backends(database_url: str) -> list[int]:
    """The PostgreSQL backend processes connected to the database ``database_url`` names."""
    import psycopg

    url = database_url.replace("postgres://", "postgresql://", 1)
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    return [int(r[0]) for r in rows]


def clean_redis(redis_url: str, prefix: str) -> None:
    """Delete the benchmark's Redis keys (those under ``prefix``)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@dataclass(frozen=True)
class Measured:
    """One measured wrk run: its summary, the CPU seconds gunicorn's workers and PostgreSQL spent
    during it, and the end-entity certificates the database gained."""

    stats: dict[str, int]
    cpu_web: float
    cpu_db: float
    certificates: int


def measure(
    server: subprocess.Popen[bytes], env: dict[str, str], database_url: str, run: Callable[[], dict[str, int]]
) -> Measured:
    """Run ``run`` (wrk) once, counting the CPU of ``server``'s workers and of PostgreSQL."""
    before = count_certificates(env)
    workers, backends = children(server.pid), postgres_backends(database_url)
    cpu_web, cpu_db = cpu_seconds(workers), cpu_seconds(backends)
    stats = run()
    cpu_web, cpu_db = cpu_seconds(workers) - cpu_web, cpu_seconds(backends) - cpu_db
    return Measured(stats, cpu_web, cpu_db, count_certificates(env) - before)


def stop(server: subprocess.Popen[bytes], *, redis_url: str, prefix: str, database_url: str) -> None:
    """Stop gunicorn, then remove the benchmark's Redis keys and its database."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
    clean_redis(redis_url, prefix)
    recreate_database(database_url, create=False)
