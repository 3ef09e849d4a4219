"""``create_eab_key --endpoint NAME [--user USER]``: print a key id and HMAC key (shown once)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandParser

from pki.acme.endpoints import create_eab_key
from pki.exceptions import NotFound
from pki.management.base import PKICommand
from pki.models import AcmeEndpoint


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--endpoint", required=True, help="the ACME endpoint's name")
        parser.add_argument("--user", help="the KMI user the account belongs to")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            endpoint = AcmeEndpoint.objects.get(name=opts["endpoint"])
        except AcmeEndpoint.DoesNotExist:
            raise NotFound(f"no ACME endpoint named {opts['endpoint']!r}") from None
        user = None
        if opts["user"]:
            try:
                user = User.objects.get(username=opts["user"])
            except User.DoesNotExist:
                raise NotFound(f"no user named {opts['user']!r}") from None
        row, hmac_key = create_eab_key(endpoint=endpoint, user=user, actor=self.actor())
        self.stdout.write(f"key id:   {row.key_id}\nhmac key: {hmac_key}\n")
        self.stdout.write(
            "The HMAC key is shown only now; give both to the ACME client (e.g. certbot "
            "--eab-kid KEY_ID --eab-hmac-key HMAC_KEY)."
        )
