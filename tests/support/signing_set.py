"""A private Redis and one real signing worker (with the KEK) for tests of ``KMI_SIGNING=worker``."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.processes import (
    Proc,
    base_env,
    free_port_in,
    start_redis,
    start_worker,
    wait_for,
    worker_idle,
)


class SigningSet:
    """A private Redis, one signing worker with the KEK, and the environment of a web process without it."""

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
        idle = lambda: worker_idle(self.worker, self.redis_url, self.prefix)  # noqa: E731
        wait_for(idle, timeout=60, what="worker idle")

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
