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
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import (  # noqa: E402 - needs ROOT on sys.path
    WRK_SUMMARY,
    manage,
    measure,
    recreate_database,
    run_wrk,
    server_environment,
    start_gunicorn,
    stop,
    tls_csr,
)

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_api")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
PORT = int(os.environ.get("BENCH_PORT", "18480"))
TARGET = 500
PREFIX = f"kmi-bench-api-{os.getpid()}"

WRK_SCRIPT = (
    r"""
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
"""
    + WRK_SUMMARY
)


def _environment() -> dict[str, str]:
    return server_environment(
        database_url=BENCH_DB, redis_url=BENCH_REDIS, prefix=PREFIX, KMI_API_ENROLL_RATE="100000000/minute"
    )


def _setup(env: dict[str, str]) -> str:
    """Migrate, create the CAs, a requester and its token; return the token text."""
    manage(env, "migrate", "-v", "0")
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
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


def _make_bodies(n: int, path: Path) -> None:
    """Pre-make ``n`` EC P-256 CSRs (distinct keys) as JSON request bodies, one a line."""
    from cryptography.hazmat.primitives import serialization

    with path.open("w") as fh:
        for i in range(n):
            pem = tls_csr(f"host{i}.bench.example.test").public_bytes(serialization.Encoding.PEM).decode()
            fh.write(json.dumps({"csr": pem, "ca": "bench-issuing", "profile": "tls-server"}) + "\n")


def _start_gunicorn(
    env: dict[str, str], workers: int, threads: int, worker_class: str = ""
) -> subprocess.Popen[bytes]:
    # An enrollment now waits on PostgreSQL for three short round trips only: sync workers (one
    # thread) spend less CPU per certificate than gthread workers contending for the GIL.
    extra = ("--threads", str(threads), *(("--worker-class", worker_class) if worker_class else ()))
    return start_gunicorn(env, port=PORT, workers=workers, ready_path="/api/schema/", extra=extra)


def _wrk(script: Path, bodies: Path, token: str, seconds: int, connections: int) -> dict[str, int]:
    return run_wrk(
        script,
        port=PORT,
        seconds=seconds,
        connections=connections,
        args=(str(bodies),),
        env=dict(os.environ, BENCH_TOKEN=token),
    )


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
            run = measure(
                server, env, BENCH_DB, lambda: _wrk(script, bodies, token, args.seconds, args.connections)
            )
        finally:
            stop(server, redis_url=BENCH_REDIS, prefix=PREFIX, database_url=BENCH_DB)
    stats, cpu_web, cpu_db = run.stats, run.cpu_web, run.cpu_db
    seconds = stats["duration_us"] / 1e6
    created = stats["requests"] - stats["non2xx"]
    rate = created / seconds
    print(
        f"api enroll: {created} certificates in {seconds:.1f} s over {args.connections} connections, "
        f"{args.workers} gunicorn workers x {args.threads} threads; "
        f"p50 {stats['p50_us'] / 1000:.1f} ms, p99 {stats['p99_us'] / 1000:.1f} ms; "
        f"errors: {stats['non2xx']} non-201, {stats['socket_errors']} socket; "
        f"rows added {run.certificates}"
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
