"""Certificate listing and search through the API at a million certificates (PostgreSQL).

Loads N synthetic certificate rows (COPY) under an issuing CA, then calls
``GET /api/v1/certificates/`` in process through the WSGI application with an administrator's
API token, as a client would: the first page, a page deep in the cursor walk, a filter by CA and
state, and ``q=`` searches for a rare term (one certificate), a common term (thousands) and a
term that matches nothing. Prints the median and worst of repeated calls per query.

Issue 4 asks for cursor pagination that "stays fast at millions of rows" and names no number,
so the RESULT lines carry no target (``target=-``).
Usage: ``make bench-search`` or ``python bench/search.py [--rows 1000000]``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import create_cas, recreate_database  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_search")
CALLS = 15


def setup_env(database_url: str = BENCH_DB) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("KMI_KEK", "bench:" + base64.urlsafe_b64encode(b"s" * 32).decode())
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    os.environ["KMI_LOG_LEVEL"] = "WARNING"
    os.environ["KMI_BASE_URL"] = "http://pki.example.test"
    os.environ.setdefault("KMI_ALLOWED_HOSTS", "pki.example.test")
    import django

    django.setup()


def load_rows(ca_id: int, profile_id: int, n: int) -> float:
    """``n`` certificates named hostI.teamJ.example.test (1,000 teams), a tenth of them revoked."""
    from django.db import connection

    now = dt.datetime.now(dt.UTC)
    nb, na = (now - dt.timedelta(days=30)).isoformat(), (now + dt.timedelta(days=60)).isoformat()
    columns = (
        "ca_id, profile_id, serial, der, subject, san_text, not_before, not_after, fingerprint_sha256, "
        "key_fingerprint, is_ca, auto_renew, revoked_at, revocation_reason, created_at, owner_email, "
        "owner_webhook_url"
    )
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY pki_certificate ({columns}) FROM STDIN") as copy:
            buf = io.StringIO()
            for i in range(n):
                host = f"host{i}.team{i % 1000}.example.test"
                serial = format((i + 1) << 64 | 0x5EED, "x")
                fp = hashlib.sha256(serial.encode()).hexdigest()
                revoked, reason = (nb, "superseded") if i % 10 == 0 else (r"\N", "")
                buf.write(
                    f"{ca_id}\t{profile_id}\t{serial}\t\\\\x\tCN={host}\tdns:{host}\\nip:10.{i >> 16 & 255}."
                    f"{i >> 8 & 255}.{i & 255}\t{nb}\t{na}\t{fp}\t{'0' * 64}\tf\tf\t{revoked}\t{reason}\t"
                    f"{nb}\t\t\n"
                )
                if i % 50_000 == 49_999:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
        cursor.execute("VACUUM (ANALYZE) pki_certificate")
    return time.perf_counter() - t0


def _get(app: Any, token: str, query: str) -> tuple[float, dict[str, Any]]:
    import json

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/certificates/",
        "QUERY_STRING": query,
        "SERVER_NAME": "pki.example.test",
        "SERVER_PORT": "80",
        "HTTP_HOST": "pki.example.test",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_ACCEPT": "application/json",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    status: list[str] = []
    t0 = time.perf_counter()
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    seconds = time.perf_counter() - t0
    if not status[0].startswith("200"):
        raise SystemExit(f"{query}: {status[0]} {body[:300]!r}")
    return seconds, json.loads(body)


def main() -> None:
    """Load the rows, time the queries, print the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (to EXPLAIN by hand)")
    args = parser.parse_args()
    recreate_database(BENCH_DB)
    try:
        setup_env()
        from django.contrib.auth.models import User
        from django.core.management import call_command

        from pki.models import Profile
        from pki.tokens import create_token
        from web.wsgi import application

        call_command("migrate", verbosity=0)
        _root, ca = create_cas()
        profile = Profile.objects.get(name="tls-server")
        print(f"loading {args.rows:,} certificates…", flush=True)
        load = load_rows(ca.pk, profile.pk, args.rows)
        print(f"loaded in {load:.1f} s (COPY, indexes, VACUUM ANALYZE)")
        admin = User.objects.create_superuser(username="bench-admin", email="", password=None)
        token = create_token(user=admin, actor="bench").text

        _, first = _get(application, token, "page_size=50")
        deep = first
        for _ in range(20):  # twenty pages into the cursor walk
            _, deep = _get(application, token, deep["next"].split("?", 1)[1])
        rare = args.rows // 2
        queries = {
            "first_page": "page_size=50",
            "page_21": deep["next"].split("?", 1)[1],
            "ca_revoked": "ca=issuing&state=revoked&page_size=50",
            "search_rare": f"q=host{rare}.team{rare % 1000}.example&page_size=50",
            "search_common": "q=team7.example&page_size=50",
            "search_ip": f"q=ip:10.{rare >> 16 & 255}.{rare >> 8 & 255}.{rare & 255}&page_size=50",
            "search_none": "q=nowhere.invalid&page_size=50",
        }
        for name, query in queries.items():
            times, results = [], 0
            for _ in range(CALLS):
                seconds, body = _get(application, token, query)
                times.append(seconds * 1000)
                results = len(body["results"])
            median, worst = statistics.median(times), max(times)
            print(f"{name:>14}: {results:>2} results, median {median:7.2f} ms, worst {worst:7.2f} ms")
            print(f"RESULT list_{name}={median:.2f} ms target=- -")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            recreate_database(BENCH_DB, create=False)  # leave the server as we found it


if __name__ == "__main__":
    main()
