"""``create_kek --out FILE``: write a new KEK file, or add a new current KEK to an existing one."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from pki.conf import parse_kek_lines
from pki.management.base import PKICommand
from pki.settings_registry import KEK_BYTES


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="KEK file to create or extend")
        parser.add_argument("--id", dest="kek_id", help="id of the new KEK (default: kek-<date>-<random>)")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["out"])
        existing = {}
        if path.exists():
            existing = parse_kek_lines(path.read_text(encoding="utf-8"), source=str(path))
        kek_id = opts["kek_id"] or f"kek-{secrets.token_hex(4)}"
        if kek_id in existing:
            raise ValueError(f"KEK id {kek_id!r} already exists in {path}")
        line = f"{kek_id}:{base64.urlsafe_b64encode(secrets.token_bytes(KEK_BYTES)).decode()}\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            if not existing:
                fh.write("# KMI key-encryption keys, id:base64url (the last line is current)\n")
            fh.write(line)
        path.chmod(0o600)
        verb = "added new current KEK" if existing else "created KEK file with KEK"
        self.stdout.write(f"{verb} {kek_id} in {path}; use KMI_KEK_FILE={path}")
        if existing:
            self.stdout.write("run `python manage.py rewrap_keys` to re-wrap existing keys under it")
