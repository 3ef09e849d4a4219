"""``run_lifecycle [--job NAME …] [--enqueue]``: run the scheduled lifecycle jobs now (or queue them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandParser
from django.db import transaction

from pki import lifecycle
from pki.management.base import PKICommand
from pki.rotation import update_generations

JOBS: dict[str, tuple[str, Callable[[], object]]] = {
    "expiry": ("pki.lifecycle.expiry_scan", lifecycle.expiry_scan),
    "renew": ("pki.signing.auto_renew", lifecycle.auto_renew_certificates),
    "deactivate": ("pki.lifecycle.deactivate_expired_keys", lifecycle.deactivate_expired_keys),
    "destroy": ("pki.lifecycle.destroy_keys_past_retention", lifecycle.destroy_keys_past_retention),
    "service-certs": ("pki.signing.renew_service_certificates", lifecycle.renew_service_certificates),
    "reconcile": ("pki.signing.reconcile_requests", lifecycle.reconcile_approved_requests),
    "ca-generations": ("pki.lifecycle.ca_generations", lambda: update_generations(actor=lifecycle.ACTOR)),
}


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--job", action="append", choices=sorted(JOBS), help="default: every job")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="send the jobs to the Celery workers instead of running here",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        from pki.tasks import enqueue

        for name in opts["job"] or list(JOBS):
            task, fn = JOBS[name]
            if opts["enqueue"]:
                with transaction.atomic():
                    enqueue(task, robust=False)
                self.stdout.write(f"{name}: queued {task}")
            else:
                self.stdout.write(f"{name}: {json.dumps(fn(), default=str)}")
