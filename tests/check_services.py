"""Stop `make test` early, with the command to fix it, when PostgreSQL or Redis is unreachable."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import psycopg
import redis

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def main() -> int:
    """Return 0 when both services answer, else print what to do and return 1."""
    db_url = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    failed = False
    try:
        psycopg.connect(db_url.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
    except psycopg.Error as exc:
        host = urlsplit(db_url).netloc.rsplit("@", 1)[-1]
        print(
            f"PostgreSQL at {host} is not reachable ({str(exc).strip()}).\n  start it: {PG_START}\n"
            "  or point TEST_DATABASE_URL at another server",
            file=sys.stderr,
        )
        failed = True
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        print(
            f"Redis at {urlsplit(redis_url).netloc} is not reachable ({exc}).\n  start it: {REDIS_START}\n"
            "  or point TEST_REDIS_URL at another server",
            file=sys.stderr,
        )
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
