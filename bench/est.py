"""EST simpleenroll throughput: gunicorn (2 workers) + PostgreSQL + Redis, wrk posting CSRs with
HTTP Basic one-time enrollment codes.

Creates a fresh database, a root and an issuing CA, an EST label and one enrollment code per
request (``create_enrollment_codes(count=N)``: the provisioning list a real fleet gets; a code is
used once), and pre-made EC P-256 CSRs as base64 DER. wrk (one thread) POSTs each code with its
own CSR to ``/.well-known/est/bench/simpleenroll``. The rate counts certificates the database
gained (a code seen again would only repeat its answer). Prints certificates/s, p50/p99 and
``RESULT est_enroll_rate=… certs/s target=300 met|missed``.

Usage: ``make bench-est`` or ``python bench/est.py [--seconds 15] [--connections 16]``.
Environment: BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_PORT (default 22495).
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
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import recreate_database  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_est")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
PORT = int(os.environ.get("BENCH_PORT", "22495"))
TARGET = 300
PREFIX = f"kmi-bench-est-{os.getpid()}"

WRK_SCRIPT = r"""
local auths, bodies = {}, {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local auth, body = line:match("([^\t]+)\t(.+)")
    auths[#auths + 1] = auth
    bodies[#bodies + 1] = body
  end
  i = tonumber(args[2]) or 0
end
function request()
  i = (i % #bodies) + 1
  return wrk.format("POST", "/.well-known/est/bench/simpleenroll",
    {["Content-Type"] = "application/pkcs10", ["Authorization"] = "Basic " .. auths[i]}, bodies[i])
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
            "KMI_REDIS_KEY_PREFIX": f"{PREFIX}:",
            "KMI_OCSP_REDIS_PREFIX": f"{PREFIX}:ocsp",
            "KMI_KEK": env.get("BENCH_KEK", "bench:" + base64.urlsafe_b64encode(b"a" * 32).decode()),
            "DJANGO_SETTINGS_MODULE": "web.settings",
            "KMI_LOG_LEVEL": "WARNING",
            "KMI_BASE_URL": "http://pki.example.test",
            "KMI_DB_CONN_MAX_AGE": "600",
        }
    )
    return env


def _setup(env: dict[str, str], count: int, lines: Path) -> None:
    """Migrate; create the CAs, the EST label ``bench`` and ``count`` codes, each with a CSR."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    code = f"""
import base64
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from bench.support import create_cas
from pki.est.labels import create_enrollment_codes, create_est_label
from pki.models import Profile
root, ca = create_cas("bench-root", "bench-issuing")
label = create_est_label(name="bench", ca=ca, profile=Profile.objects.get(name="tls-client"), actor="bench")
codes = create_enrollment_codes(label=label, count={count}, actor="bench")
with Path({str(lines)!r}).open("w") as fh:
    for i, c in enumerate(codes):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"device{{i}}.bench.example.test")])
        ).sign(key, hashes.SHA256())
        auth = base64.b64encode(f"{{c.code_id}}:{{c.secret}}".encode()).decode()
        body = base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()
        fh.write(f"{{auth}}\\t{{body}}\\n")
"""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True)


def _start_gunicorn(env: dict[str, str], workers: int) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [gunicorn, "web.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{PORT}", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/.well-known/est/bench/cacerts", timeout=2):
                return proc
        except urllib.error.HTTPError:
            return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start")


def _wrk(script: Path, lines: Path, offset: int, seconds: int, connections: int) -> dict[str, int]:
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
            str(lines),
            str(offset),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if match is None:
        raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(match.group(1)))


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


def _cpu_seconds(pids: list[int]) -> float:
    """User+system CPU time of these processes (from /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _postgres_backends() -> list[int]:
    import psycopg

    url = BENCH_DB.replace("postgres://", "postgresql://", 1)
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    return [int(r[0]) for r in rows]


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
    parser.add_argument("--codes", type=int, default=16000, help="enrollment codes (one per request)")
    args = parser.parse_args()

    env = _environment()
    recreate_database(BENCH_DB)
    with tempfile.TemporaryDirectory(prefix="kmi-bench-est-") as tmp:
        lines, script = Path(tmp) / "requests.tsv", Path(tmp) / "est.lua"
        _setup(env, args.codes, lines)
        script.write_text(WRK_SCRIPT)
        server = _start_gunicorn(env, args.workers)
        try:
            warm = _wrk(script, lines, 0, 2, args.connections)  # imports, connections, key cache
            before = _count_certificates(env)
            workers, backends = _children(server.pid), _postgres_backends()
            cpu_web, cpu_db = _cpu_seconds(workers), _cpu_seconds(backends)
            stats = _wrk(script, lines, warm["requests"] + 1, args.seconds, args.connections)
            cpu_web, cpu_db = _cpu_seconds(workers) - cpu_web, _cpu_seconds(backends) - cpu_db
            after = _count_certificates(env)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            _clean_redis()
            recreate_database(BENCH_DB, create=False)
    seconds = stats["duration_us"] / 1e6
    issued = after - before
    rate = issued / seconds
    print(
        f"EST simpleenroll: {issued} certificates in {seconds:.1f} s ({stats['requests']} requests) over "
        f"{args.connections} connections, {args.workers} gunicorn workers; "
        f"p50 {stats['p50_us'] / 1000:.1f} ms, p99 {stats['p99_us'] / 1000:.1f} ms; "
        f"errors: {stats['non2xx']} non-2xx, {stats['socket_errors']} socket; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if issued:
        # CPU per certificate does not depend on how busy the shared machine is: it says what two
        # idle cores could do (wrk excluded).
        web_ms, db_ms = cpu_web / issued * 1000, cpu_db / issued * 1000
        print(
            f"CPU per certificate: gunicorn {web_ms:.2f} ms, PostgreSQL {db_ms:.2f} ms "
            f"-> about {2000 / (web_ms + db_ms):.0f} certs/s on two idle cores"
        )
    if stats["requests"] > args.codes - warm["requests"]:
        print("note: more requests than fresh codes: raise --codes for a longer run")
    verdict = "met" if rate >= TARGET else "missed"
    print(f"RESULT est_enroll_rate={rate:.0f} certs/s target={TARGET} {verdict}")
    print(f"RESULT est_enroll_p50={stats['p50_us'] / 1000:.1f} ms target=- -")
    print(f"RESULT est_enroll_p99={stats['p99_us'] / 1000:.1f} ms target=- -")


if __name__ == "__main__":
    main()
