"""REST enrollment throughput: gunicorn (2 workers) + PostgreSQL + Redis, wrk posting CSRs.

Creates a fresh database, a root and an issuing CA, a requester with an API token, and
pre-made EC P-256 CSRs; then concurrent clients (wrk, one thread) POST them to
``/api/v1/enroll``. Every 201 is a certificate committed with its audit events. Prints
certificates/s, p50/p99 latency and ``RESULT api_enroll_rate=… certs/s target=500 met|missed``.

Usage: ``make bench-api`` or ``python bench/api_enroll.py [--seconds 15] [--connections 16]``.
Environment: BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_PORT (default 18480).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import recreate_database  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_api")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
PORT = int(os.environ.get("BENCH_PORT", "18480"))
TARGET = 500
PREFIX = f"kmi-bench-api-{os.getpid()}"

WRK_SCRIPT = r"""
local bodies = {}
local i = 0
local token = os.getenv("BENCH_TOKEN")
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  -- each wrk thread starts at a different offset so CSRs are not sent twice at once
  i = math.random(#bodies)
end
function request()
  i = (i % #bodies) + 1
  return wrk.format("POST", "/api/v1/enroll",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token,
     ["Accept"] = "application/pem-certificate-chain"}, bodies[i])
end
local created = 0
local other = 0
function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"non2xx\": %d, \"socket_errors\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": BENCH_DB,
            "REDIS_URL": BENCH_REDIS,
            "KMI_CACHE_PREFIX": PREFIX,
            # Celery's queues and bindings (OCSP pre-signing after issuance) under the prefix too.
            "KMI_REDIS_KEY_PREFIX": f"{PREFIX}:",
            "KMI_OCSP_REDIS_PREFIX": f"{PREFIX}:ocsp",
            "KMI_KEK": env.get("BENCH_KEK", "bench:" + base64.urlsafe_b64encode(b"a" * 32).decode()),
            "DJANGO_SETTINGS_MODULE": "web.settings",
            "KMI_LOG_LEVEL": "WARNING",
            "KMI_BASE_URL": "http://pki.example.test",
            "KMI_API_ENROLL_RATE": "100000000/minute",
            "KMI_DB_CONN_MAX_AGE": "600",
        }
    )
    return env


def _setup(env: dict[str, str]) -> str:
    """Migrate, create the CAs, a requester and its token; return the token text."""
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    code = """
from django.contrib.auth.models import User
from bench.support import create_cas
from pki.access import grant_role
from pki.models import Profile, Role
from pki.tokens import create_token
root, ca = create_cas("bench-root", "bench-issuing")
user = User.objects.create_user(username="bench")
tls = Profile.objects.get(name="tls-server")
grant_role(user=user, role=Role.REQUESTER, ca=ca, profile=tls, actor="bench")
print(create_token(user=user, actor="bench").text)
"""
    out = subprocess.run(
        [python, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _make_bodies(n: int, path: Path) -> None:
    """Pre-make ``n`` EC P-256 CSRs (distinct keys) as JSON request bodies, one a line."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    with path.open("w") as fh:
        for i in range(n):
            key = ec.generate_private_key(ec.SECP256R1())
            name = f"host{i}.bench.example.test"
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(key, hashes.SHA256())
            )
            pem = csr.public_bytes(serialization.Encoding.PEM).decode()
            fh.write(json.dumps({"csr": pem, "ca": "bench-issuing", "profile": "tls-server"}) + "\n")


def _start_gunicorn(
    env: dict[str, str], workers: int, threads: int, worker_class: str = ""
) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    # An enrollment now waits on PostgreSQL for three short round trips only: sync workers (one
    # thread) spend less CPU per certificate than gthread workers contending for the GIL.
    command = [gunicorn, "web.wsgi", "-w", str(workers), "--threads", str(threads)]
    if worker_class:
        command += ["--worker-class", worker_class]
    proc = subprocess.Popen(
        [*command, "-b", f"127.0.0.1:{PORT}", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/schema/", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start")


def _wrk(script: Path, bodies: Path, token: str, seconds: int, connections: int) -> dict[str, int]:
    env = dict(os.environ, BENCH_TOKEN=token)
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
            f"http://127.0.0.1:{PORT}",
            "--",
            str(bodies),
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


def _cpu_seconds(pids: list[int]) -> float:
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


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _postgres_backends() -> list[int]:
    import psycopg

    url = BENCH_DB.replace("postgres://", "postgresql://", 1)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    return [int(r[0]) for r in rows]


def _count_certificates(env: dict[str, str]) -> int:
    code = "from pki.models import Certificate; print(Certificate.objects.filter(is_ca=False).count())"
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _clean_redis() -> None:
    import redis

    client = redis.Redis.from_url(BENCH_REDIS)
    keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


def main() -> None:
    """Run the benchmark and print the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="gthread threads per worker (1: sync)")
    parser.add_argument("--csrs", type=int, default=4000)
    parser.add_argument(
        "--worker-class", default="", help="gunicorn worker class (default: sync, or gthread with threads)"
    )
    args = parser.parse_args()

    env = _environment()
    recreate_database(BENCH_DB)
    token = _setup(env)
    with tempfile.TemporaryDirectory(prefix="kmi-bench-api-") as tmp:
        bodies = Path(tmp) / "bodies.jsonl"
        script = Path(tmp) / "enroll.lua"
        _make_bodies(args.csrs, bodies)
        script.write_text(WRK_SCRIPT)
        server = _start_gunicorn(env, args.workers, args.threads, args.worker_class)
        try:
            _wrk(script, bodies, token, 2, args.connections)  # warm-up: imports, connections, key cache
            before = _count_certificates(env)
            workers = _children(server.pid)
            backends = _postgres_backends()
            cpu_web, cpu_db = _cpu_seconds(workers), _cpu_seconds(backends)
            stats = _wrk(script, bodies, token, args.seconds, args.connections)
            cpu_web, cpu_db = _cpu_seconds(workers) - cpu_web, _cpu_seconds(backends) - cpu_db
            after = _count_certificates(env)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            _clean_redis()
            recreate_database(BENCH_DB, create=False)
    seconds = stats["duration_us"] / 1e6
    created = stats["requests"] - stats["non2xx"]
    rate = created / seconds
    print(
        f"api enroll: {created} certificates in {seconds:.1f} s over {args.connections} connections, "
        f"{args.workers} gunicorn workers x {args.threads} threads; "
        f"p50 {stats['p50_us'] / 1000:.1f} ms, p99 {stats['p99_us'] / 1000:.1f} ms; "
        f"errors: {stats['non2xx']} non-201, {stats['socket_errors']} socket; "
        f"rows added {after - before}"
    )
    if created:
        # CPU spent per certificate does not depend on how busy the shared machine is; it says
        # what two idle cores could do (wrk and Redis excluded).
        web_ms, db_ms = cpu_web / created * 1000, cpu_db / created * 1000
        print(
            f"CPU per certificate: gunicorn {web_ms:.2f} ms, PostgreSQL {db_ms:.2f} ms "
            f"-> about {2000 / (web_ms + db_ms):.0f} certs/s on two idle cores; "
            f"load average now {os.getloadavg()[0]:.1f}"
        )
    verdict = "met" if rate >= TARGET else "missed"
    print(f"RESULT api_enroll_rate={rate:.0f} certs/s target={TARGET} {verdict}")
    print(f"RESULT api_enroll_p50={stats['p50_us'] / 1000:.1f} ms target=- -")
    print(f"RESULT api_enroll_p99={stats['p99_us'] / 1000:.1f} ms target=- -")


if __name__ == "__main__":
    main()
