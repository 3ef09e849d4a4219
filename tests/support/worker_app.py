"""The Celery app test workers run (``celery -A tests.support.worker_app``): KMI's app plus barriers.

A barrier lets a test stop a job at an exact point and kill the process running it:
``KMI_TEST_BARRIER_DIR/<signal>.armed`` makes the next ``<signal>`` (sent after commit) write
the process id to ``<signal>.pid``, rename ``.armed`` to ``.reached`` and wait for
``<signal>.release``. Only the first hit blocks (the rename consumes the arming).
``KMI_TEST_BEAT_SECONDS`` replaces the beat schedule with a fast expiry scan (or with the tasks
named in ``KMI_TEST_BEAT_TASKS``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

from pki.signals import certificate_issued, notification_sent
from web.celery import app

__all__ = ["app"]


def _barrier(name: str) -> None:
    folder = os.environ.get("KMI_TEST_BARRIER_DIR")
    if not folder:
        return
    base = Path(folder)
    (base / f"{name}.pid").write_text(str(os.getpid()))
    try:
        (base / f"{name}.armed").rename(base / f"{name}.reached")
    except FileNotFoundError:
        return
    while not (base / f"{name}.release").exists():
        time.sleep(0.05)


def _on_notification_sent(**_: Any) -> None:
    _barrier("notification_sent")


def _on_certificate_issued(**_: Any) -> None:
    _barrier("certificate_issued")


@app.on_after_finalize.connect
def _fast_beat(sender: Celery, **_: object) -> None:
    seconds = os.environ.get("KMI_TEST_BEAT_SECONDS")
    tasks = os.environ.get("KMI_TEST_BEAT_TASKS")  # comma-separated task names instead of the scan
    if seconds and tasks:
        sender.conf.beat_schedule = {
            f"test-{name}": {"task": name, "schedule": float(seconds)} for name in tasks.split(",")
        }
    elif seconds:
        sender.conf.beat_schedule = {
            "test-expiry-scan": {"task": "pki.lifecycle.expiry_scan", "schedule": float(seconds)}
        }


notification_sent.connect(_on_notification_sent, weak=False)
certificate_issued.connect(_on_certificate_issued, weak=False)
