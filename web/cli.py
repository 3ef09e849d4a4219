"""The ``kmi`` console command: Django's management commands with KMI's settings.

``pip install .`` puts ``kmi`` on PATH; ``kmi init_ca …`` is ``python manage.py init_ca …`` in a
source tree (manage.py calls this same function), with ``web.settings`` unless
``DJANGO_SETTINGS_MODULE`` names other settings.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run a management command (``kmi help`` lists them)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv if argv is None else argv)
