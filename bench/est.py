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
import os
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
)

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_est")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
PORT = int(os.environ.get("BENCH_PORT", "22495"))
TARGET = 300
PREFIX = f"kmi-bench-est-{os.getpid()}"

WRK_SCRIPT = (
    r"""
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
"""
    + WRK_SUMMARY
)


def _environment() -> dict[str, str]:
    return server_environment(database_url=BENCH_DB, redis_url=BENCH_REDIS, prefix=PREFIX)


def _setup(env: dict[str, str], count: int, lines: Path) -> None:
    """Migrate; create the CAs, the EST label ``bench`` and ``count`` codes, each with a CSR."""
    manage(env, "migrate", "-v", "0")
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
    manage(env, "shell", "-c", code)


def _wrk(script: Path, lines: Path, offset: int, seconds: int, connections: int) -> dict[str, int]:
    return run_wrk(
        script, port=PORT, seconds=seconds, connections=connections, args=(str(lines), str(offset))
    )


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
        server = start_gunicorn(
            env, port=PORT, workers=args.workers, ready_path="/.well-known/est/bench/cacerts"
        )
        try:
            warm = _wrk(script, lines, 0, 2, args.connections)  # imports, connections, key cache
            run = measure(
                server,
                env,
                BENCH_DB,
                lambda: _wrk(script, lines, warm["requests"] + 1, args.seconds, args.connections),
            )
        finally:
            stop(server, redis_url=BENCH_REDIS, prefix=PREFIX, database_url=BENCH_DB)
    stats, cpu_web, cpu_db = run.stats, run.cpu_web, run.cpu_db
    seconds = stats["duration_us"] / 1e6
    issued = run.certificates
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
