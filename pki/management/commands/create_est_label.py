"""``create_est_label --name L --ca CA --profile P [--client-ca CA]... [--serverkeygen] [--default]``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from pki.est.labels import create_est_label
from pki.management.base import PKICommand, get_ca, get_profile


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the label: /.well-known/est/<name>/")
        parser.add_argument("--ca", required=True, help="the issuing CA")
        parser.add_argument("--profile", required=True, help="the issuance profile, e.g. tls-client")
        parser.add_argument(
            "--client-ca",
            action="append",
            default=[],
            help="a CA whose certificates authenticate devices by TLS client certificate (repeatable)",
        )
        parser.add_argument(
            "--serverkeygen",
            action="store_true",
            help="allow serverkeygen: KMI makes the key and returns it once as PKCS#8 over TLS",
        )
        parser.add_argument("--default", action="store_true", help="also answer /.well-known/est/ itself")

    def handle(self, *args: Any, **opts: Any) -> None:
        label = create_est_label(
            name=opts["name"],
            ca=get_ca(opts["ca"]),
            profile=get_profile(opts["profile"]),
            client_cas=[get_ca(name) for name in opts["client_ca"]],
            serverkeygen=opts["serverkeygen"],
            is_default=opts["default"],
            actor=self.actor(),
        )
        base = str(settings.KMI.get("BASE_URL", "")).rstrip("/")
        self.stdout.write(f"created EST label {label.name}: {base}/.well-known/est/{label.name}/")
