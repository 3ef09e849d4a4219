"""The one Celery app of KMI; its beat schedule lives in ``pki.tasks.BEAT_SCHEDULE``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")

app = Celery("kmi")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["pki"])


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **_: object) -> None:
    from pki.tasks import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE
