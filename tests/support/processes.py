"""Start and stop real KMI processes for fault tests: Celery workers, beat, Redis, a web-side call."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEST_KEK = "test-1:dGVzdC1rZWstMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="
# The signing channel's MAC key (KMI_SIGNING_SECRET), shared by test web processes and signers.
TEST_SIGNING_SECRET = "test-signing-secret-0123456789abcdef-not-for-production"


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 60, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def database_url() -> str:
    """The URL of the test database this pytest process uses (workers must use the same one)."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def free_port_in(first: int, last: int) -> int:
    """A free TCP port in ``[first, last]`` (the range this engineer's tests may use)."""
    for port in range(first, last + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {first}-{last}")


def worker_ports(first: int, last: int, *, slices: int = 8) -> tuple[int, int]:
    """This xdist worker's own slice of ``[first, last]``: two workers' servers never race for a port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % slices if worker[2:].isdigit() else 0
    span = (last - first + 1) // slices
    return first + index * span, first + index * span + span - 1


def base_env(*, redis_url: str | None, prefix: str, data_dir: Path, kek: bool) -> dict[str, str]:
    """Environment of a production-like KMI process (web.settings, explicit DB, Redis, KEK)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KMI_", "DJANGO_", "REDIS_", "DATABASE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="web.settings",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url(),
        KMI_BASE_URL="http://pki.example.test",
        KMI_DATA_DIR=str(data_dir),
        KMI_CACHE_PREFIX=prefix,
        KMI_REDIS_KEY_PREFIX=prefix,
        # Pre-signed OCSP responses under the prefix too, so delete_prefixed_keys removes them.
        KMI_OCSP_REDIS_PREFIX=f"{prefix}ocsp",
        KMI_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        KMI_EMAIL_FILE_PATH=str(data_dir / "mail"),
        KMI_BROKER_VISIBILITY_TIMEOUT="30",
        KMI_LOG_LEVEL="INFO",
        KMI_SIGNING_SECRET=TEST_SIGNING_SECRET,
        PYTHONWARNINGS="ignore",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    if kek:
        env["KMI_KEK"] = TEST_KEK
    return env


@dataclass
class Proc:
    """A running process and the file its output goes to."""

    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def start(cmd: list[str], env: Mapping[str, str], log: Path) -> Proc:
    """Start ``cmd`` in its own session with output to ``log``."""
    fh = log.open("wb")
    popen = subprocess.Popen(
        cmd, env=dict(env), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
    )
    fh.close()
    return Proc(popen, log)


def start_worker(env: Mapping[str, str], log: Path, *, queues: str = "celery,signing") -> Proc:
    """A prefork Celery worker (one child) on ``queues``; returns once it reports ready."""
    proc = start(
        [
            str(BIN / "celery"),
            "-A",
            "tests.support.worker_app",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "-Q",
            queues,
            "-n",
            f"test-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
        log,
    )
    try:
        wait_for(lambda: " ready." in proc.output() or proc.popen.poll() is not None, what="worker ready")
    except AssertionError:
        proc.stop()
        raise AssertionError(f"worker did not start:\n{proc.output()}") from None
    if proc.popen.poll() is not None:
        raise AssertionError(f"worker exited:\n{proc.output()}")
    return proc


def start_beat(env: Mapping[str, str], log: Path, schedule: Path) -> Proc:
    """Celery beat with the test app (its schedule file in ``schedule``)."""
    return start(
        [
            str(BIN / "celery"),
            "-A",
            "tests.support.worker_app",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(schedule),
        ],
        env,
        log,
    )


def web_side_issue(
    env: Mapping[str, str], request_id: int, timeout: float = 120
) -> tuple[int, dict[str, Any]]:
    """Run ``tests.support.web_side issue`` in a fresh process; return (exit code, its JSON line)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.web_side", "issue", str(request_id)],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(f"web side printed nothing (rc {done.returncode}):\n{done.stderr.decode()}")
    return done.returncode, json.loads(lines[-1])


def web_side_api(
    env: Mapping[str, str], token: str, method: str, path: str, body: str | None = None, timeout: float = 120
) -> dict[str, Any]:
    """One REST API call from a fresh web-side process (``tests.support.web_side api``)."""
    args = [sys.executable, "-m", "tests.support.web_side", "api", token, method, path]
    if body is not None:
        body_file = Path(env.get("KMI_DATA_DIR", "/tmp")) / f"body-{uuid.uuid4().hex}.json"
        body_file.write_text(body)
        args.append(str(body_file))
    return _web_side(env, args, timeout)


def _web_side(env: Mapping[str, str], args: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(args, env=dict(env), cwd=ROOT, capture_output=True, timeout=timeout, check=False)
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"web side failed (rc {done.returncode}):\n{done.stderr.decode()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def web_side_http(env: Mapping[str, str], spec: Mapping[str, Any], timeout: float = 120) -> dict[str, Any]:
    """One plain HTTP call (EST, SCEP) from a fresh web-side process (``tests.support.web_side http``)."""
    spec_file = Path(env.get("KMI_DATA_DIR", "/tmp")) / f"http-{uuid.uuid4().hex}.json"
    spec_file.write_text(json.dumps(spec))
    args = [sys.executable, "-m", "tests.support.web_side", "http", str(spec_file)]
    result = _web_side(env, args, timeout)
    result["body"] = base64.b64decode(result["body_b64"])
    return result


# Celery's INFO lines for a task: received, then one of the outcomes (a retry is received again).
_TASK_EVENT = re.compile(
    r"Task [\w.]+\[([0-9a-f-]{36})\] (received|succeeded|failed|raised|retry|ignored|rejected|revoked)"
)


def worker_idle(
    worker: Proc, redis_url: str, prefix: str, queues: tuple[str, ...] = ("celery", "signing")
) -> bool:
    """True when no message waits in ``queues`` and every task the worker received has finished.

    A test whose worker outlives it (module-scoped) waits for this before its database is
    flushed: a task still running then (an OCSP pre-signing the test's issuance queued) would
    otherwise write rows into the next test, or deadlock with the flush's TRUNCATE.
    """
    if worker.popen.poll() is not None:
        return True
    client = redis.Redis.from_url(redis_url)
    try:
        if any(client.llen(f"{prefix}{queue}") for queue in queues):
            return False
    except redis.RedisError:
        return True  # the broker is down (a fault test): nothing more will be delivered
    finally:
        client.close()
    last: dict[str, str] = {}
    for task_id, event in _TASK_EVENT.findall(worker.output()):
        last[task_id] = event
    return all(event != "received" for event in last.values())


def client_app(redis_url: str, prefix: str) -> Celery:
    """A Celery client of its own (not the process-wide app) that sends to the test workers."""
    app = Celery("kmi-test-client", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix, "visibility_timeout": 10},
        result_backend_transport_options={"global_keyprefix": prefix},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes={"pki.signing.*": {"queue": "signing"}},
        broker_connection_retry_on_startup=True,
    )
    return app


def delete_prefixed_keys(redis_url: str, prefix: str) -> None:
    """Remove every Redis key this test run created (tests leave Redis as they found it)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def start_redis(port: int, data_dir: Path) -> Proc:
    """A private redis-server on ``port`` (never the shared one), persisting to ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = start(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(data_dir),
        ],
        os.environ,
        data_dir / "redis.log",
    )
    wait_for(lambda: _pings(port), timeout=20, what=f"redis on {port}")
    return proc


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def start_gunicorn(env: Mapping[str, str], log: Path, port: int, *, workers: int = 1) -> Proc:
    """gunicorn serving web.wsgi on ``port``; returns once it answers HTTP (any status)."""
    import urllib.error
    import urllib.request

    proc = start(
        [
            str(BIN / "gunicorn"),
            "web.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        env,
        log,
    )

    def answers() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{proc.output()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (503 while its database is down)
        except OSError:
            return False

    try:
        wait_for(answers, timeout=60, what="gunicorn")
    except AssertionError:
        proc.stop()
        raise
    return proc


def http(
    url: str, *, method: str = "GET", body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request: (status, headers, body); HTTP errors are answers too."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


class SigningWorker:
    """A private ``redis-server`` on a free port of ``ports`` and one signing worker (queues
    ``celery`` and ``signing``) holding the KEK; web processes without it use the same broker."""

    def __init__(self, tmp: Path, ports: tuple[int, int]) -> None:
        self.tmp = tmp
        self.port = free_port_in(*ports)
        self.redis_url = f"redis://127.0.0.1:{self.port}/0"
        self.prefix = f"kmi-test-{uuid.uuid4().hex[:10]}:"
        self.redis: Proc = start_redis(self.port, tmp / "redis")
        self.worker_env = base_env(redis_url=self.redis_url, prefix=self.prefix, data_dir=tmp, kek=True)
        self.worker: Proc = start_worker(self.worker_env, tmp / "worker.log")
        self.starts = 0

    def web_env(self, **extra: str) -> dict[str, str]:
        """A web process: same broker, worker-only signing, no KEK."""
        env = base_env(redis_url=self.redis_url, prefix=self.prefix, data_dir=self.tmp, kek=False)
        env.update({"KMI_SIGNING": "worker", "KMI_SIGNING_TIMEOUT": "60"})
        env.update(extra)
        return env

    def wait_idle(self) -> None:
        """Until the worker has finished what the last test queued (before the database is flushed)."""
        wait_for(
            lambda: worker_idle(self.worker, self.redis_url, self.prefix), timeout=60, what="worker idle"
        )

    def restart_redis(self) -> None:
        """Start Redis again (same data directory) and a worker if the outage ended the old one."""
        self.redis = start_redis(self.port, self.tmp / "redis")
        if self.worker.popen.poll() is not None:
            # kombu may exit a worker whose broker vanished; its supervisor starts it again.
            self.starts += 1
            self.worker = start_worker(self.worker_env, self.tmp / f"worker-{self.starts}.log")

    def close(self) -> None:
        self.worker.stop()
        self.redis.stop()
