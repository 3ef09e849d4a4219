"""``create_token USER [--expires-days N] [--name NAME]``: make an API token and print it once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from pki.clock import utcnow
from pki.management.base import PKICommand
from pki.tokens import create_token


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="user name the token authenticates as")
        parser.add_argument("--expires-days", type=int, help="days until it expires (default: never)")
        parser.add_argument("--name", default="", help="a label, e.g. the machine that uses it")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            user = get_user_model().objects.get(username=opts["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {opts['user']!r}") from None
        days = opts["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be at least 1")
        now = utcnow()
        issued = create_token(
            user=user,
            name=opts["name"],
            expires_at=now + dt.timedelta(days=days) if days else None,
            actor=self.actor(),
            now=now,
        )
        # The only time the secret is shown: stdout carries the token alone, for scripts.
        self.stdout.write(issued.text)
        expiry = (
            f"expires {issued.token.expires_at:%Y-%m-%d %H:%M}Z" if issued.token.expires_at else "no expiry"
        )
        self.stderr.write(
            f"token {issued.token.prefix} for {user.get_username()} ({expiry}); it is not shown again"
        )
