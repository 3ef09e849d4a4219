"""ACME: certbot's wall time for one http-01 issuance, and orders/s with N parallel clients.

Starts KMI under gunicorn on 127.0.0.1:18540 against its own PostgreSQL database, a DNS server
(18542) that answers every ``*.example.test`` name with 127.0.0.1, and points KMI's http-01
validation at port 18541, where certbot's standalone server (phase 1) or this script's own
responder (phase 2) answers. Validation runs in the web process (``KMI_ACME_VALIDATE_INLINE``).

Phase 1 runs ``certbot certonly --standalone`` (account already registered) a few times for new
names and reports the median wall time (``acme_certbot_wall``). certbot itself sleeps 1 s before
its first authorization poll and 1 s before its first finalization poll, and takes about 0.5 s
to stop its standalone server, so its floor is about 2.5 s whatever the server does. Then it
orders the same names again (``acme_certbot_reissue_wall``): KMI reuses the account's valid
authorizations, so no challenge runs and only certbot's finalization sleep remains.
Phase 2 runs N threads of the ``acme`` library, each placing orders (new order, http-01,
finalize, download) for ``-s`` seconds, and reports completed orders per second.

Usage: ``make bench-acme`` or ``python bench/acme.py -n 4 -s 10``. Set BENCH_REDIS_URL to keep
nonces in Redis (its keys are deleted at the end); without it they live in PostgreSQL.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named acme.py: keep its folder off the path so ``import acme`` finds the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.support import create_cas, recreate_database  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ.get("BENCH_ACME_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_acme")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "")
PORT, HTTP01_PORT, DNS_PORT = 18540, 18541, 18542
BASE = f"http://127.0.0.1:{PORT}"
DIRECTORY = f"{BASE}/acme/bench/directory"
TARGET_CERTBOT = 1.5
TARGET_ORDERS = 10.0  # complete orders/s with 4 clients on the shared 2-core machine (KMI's own goal)
PREFIX = f"kmi-bench-acme-{os.getpid()}"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": BENCH_DB,
        "REDIS_URL": BENCH_REDIS,
        "KMI_KEK": os.environ.get("KMI_KEK", "bench:" + base64.urlsafe_b64encode(b"b" * 32).decode()),
        "KMI_BASE_URL": BASE,
        "KMI_CACHE_PREFIX": PREFIX,
        "KMI_ACME_HTTP01_PORT": str(HTTP01_PORT),
        "KMI_ACME_DNS_RESOLVERS": f"127.0.0.1:{DNS_PORT}",
        "KMI_ACME_VALIDATE_INLINE": "1",
        "KMI_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "web.settings",
    }


def _setup_kmi() -> None:
    os.environ.update(_env())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from pki.acme.endpoints import create_endpoint
    from pki.models import Profile

    _root, issuing = create_cas()
    create_endpoint(
        name="bench",
        ca=issuing,
        profile=Profile.objects.get(name="tls-server"),
        allowed_identifiers=["**.example.test"],
        actor="bench",
    )


def _start_server(workers: int) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [gunicorn, "--bind", f"127.0.0.1:{PORT}", "--workers", str(workers), "--threads", "8", "web.wsgi"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(DIRECTORY, timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("KMI did not start under gunicorn")


def _certbot(tmp: Path, *args: str) -> float:
    certbot = str(Path(sys.executable).with_name("certbot"))
    cmd = [
        certbot,
        *args,
        "--non-interactive",
        "--server",
        DIRECTORY,
        "--config-dir",
        str(tmp / "config"),
        "--work-dir",
        str(tmp / "work"),
        "--logs-dir",
        str(tmp / "logs"),
    ]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"certbot failed:\n{result.stderr}")
    return elapsed


def _certbot_issue(tmp: Path, name: str, domain: str | None = None) -> float:
    return _certbot(
        tmp,
        "certonly",
        "--standalone",
        "--http-01-port",
        str(HTTP01_PORT),
        "--http-01-address",
        "127.0.0.1",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--key-type",
        "ecdsa",
        "--cert-name",
        name,
        "-d",
        domain or f"{name}.example.test",
    )


def bench_certbot(runs: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kmi-bench-certbot-"))
    try:
        first = _certbot_issue(tmp, "warm")  # registers the account
        times = [_certbot_issue(tmp, f"c{i}") for i in range(runs)]
        # The same names again: the account's valid authorizations are reused, no challenge runs.
        again = [_certbot_issue(tmp, f"again{i}", f"c{i}.example.test") for i in range(runs)]
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"certbot logs kept in {tmp / 'logs'}")
    finally:
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(tmp, ignore_errors=True)
    _report(first, times)
    median = statistics.median(again)
    print(f"certbot re-issuance runs (authorizations reused): {[round(t, 2) for t in again]}")
    print(
        f"RESULT acme_certbot_reissue_wall={median:.2f} s target={TARGET_CERTBOT} "
        f"{'met' if median <= TARGET_CERTBOT else 'missed'}"
    )


def _report(first: float, times: list[float]) -> None:
    median = statistics.median(times)
    print(
        f"certbot first run (with account registration): {first:.2f} s; runs: {[round(t, 2) for t in times]}"
    )
    print(
        f"RESULT acme_certbot_wall={median:.2f} s target={TARGET_CERTBOT} "
        f"{'met' if median <= TARGET_CERTBOT else 'missed'}"
    )


def bench_orders(clients: int, seconds: float) -> None:
    from acme import challenges, client, messages
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy import ES256, JWKEC

    from tests.acme_support import Http01Responder

    responder = Http01Responder(HTTP01_PORT).start()
    counts = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(clients + 1)

    def run(index: int) -> None:
        try:
            key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
            net = client.ClientNetwork(key, alg=ES256, user_agent="kmi-bench")
            acme = client.ClientV2(messages.Directory.from_json(net.get(DIRECTORY).json()), net)
            reg = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
            net.account = reg
            cert_key = ec.generate_private_key(ec.SECP256R1())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
            barrier.abort()
            return
        barrier.wait()
        n = 0
        while time.perf_counter() < stop:
            name = f"o{index}-{n}.example.test"
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([]))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(cert_key, hashes.SHA256())
                .public_bytes(serialization.Encoding.PEM)
            )
            try:
                order = acme.new_order(csr)
                for authz in order.authorizations:
                    chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
                    response, validation = chall.response_and_validation(key)
                    responder.tokens[chall.chall.encode("token")] = validation
                    acme.answer_challenge(chall, response)
                order = acme.poll_authorizations(order, deadline=_deadline())
                order = acme.begin_finalization(order)
                # The order is valid on the finalize answer: fetch the chain without the library's
                # fixed one-second poll delay (poll_finalization sleeps before its first poll).
                assert order.body.status == messages.STATUS_VALID, order.body.status
                assert order.body.certificate is not None
                acme._post_as_get(order.body.certificate)
                n += 1
            except Exception as exc:  # noqa: BLE001 - a benchmark reports failures and goes on
                errors.append(repr(exc))
                break
        counts[index] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        responder.stop()
        raise SystemExit(f"client setup failed: {errors[:1]}") from None
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    responder.stop()
    if errors:
        print("errors:", errors[:3])
    rate = sum(counts) / elapsed
    print(f"orders completed: {sum(counts)} by {clients} clients in {elapsed:.1f} s")
    verdict = "met" if rate >= TARGET_ORDERS else "missed"
    print(f"RESULT acme_orders_per_second={rate:.1f} orders/s target={TARGET_ORDERS:g} {verdict}")


def _deadline() -> object:
    import datetime

    return datetime.datetime.now() + datetime.timedelta(seconds=30)


def _cleanup_redis() -> None:
    if not BENCH_REDIS:
        return
    import redis

    r = redis.Redis.from_url(BENCH_REDIS)
    keys = list(r.scan_iter(match=f"{PREFIX}:*", count=1000))
    if keys:
        r.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--clients", type=int, default=4, help="parallel acme-library clients")
    parser.add_argument("-s", "--seconds", type=float, default=10, help="how long phase 2 runs")
    parser.add_argument("-r", "--runs", type=int, default=3, help="timed certbot runs")
    parser.add_argument("-w", "--workers", type=int, default=2, help="gunicorn worker processes")
    args = parser.parse_args()

    from tests.acme_support import LocalDNS

    recreate_database(BENCH_DB)
    _setup_kmi()
    dns = LocalDNS(DNS_PORT).start()
    server = _start_server(args.workers)
    try:
        bench_certbot(args.runs)
        bench_orders(args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)
        dns.stop()
        _cleanup_redis()
        from django.db import connections

        connections.close_all()
        recreate_database(BENCH_DB, create=False)  # leave PostgreSQL as we found it


if __name__ == "__main__":
    main()
