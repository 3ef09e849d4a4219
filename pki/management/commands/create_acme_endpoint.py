"""``create_acme_endpoint --name NAME --ca CA --profile PROFILE [--eab-required] [--allow PATTERN]…``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.acme.endpoints import create_endpoint
from pki.acme.locations import directory_url
from pki.management.base import PKICommand, get_ca, get_profile


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="short name used in the directory URL")
        parser.add_argument("--ca", required=True, help="the issuing CA")
        parser.add_argument("--profile", required=True, help="the issuance profile, e.g. tls-server")
        parser.add_argument("--eab-required", action="store_true", help="require external account binding")
        parser.add_argument(
            "--allow",
            action="append",
            default=[],
            help='allowed identifiers: a DNS glob ("*.example.test", "**.corp.test") or an IP network '
            '("10.0.0.0/8"); repeatable; without any, nothing is allowed',
        )
        parser.add_argument("--validity-days", type=int, help="validity of issued certificates")
        parser.add_argument(
            "--key-type", action="append", default=[], help="allowed certificate key type (repeatable)"
        )
        parser.add_argument("--terms-of-service", default="", help="URL of the terms of service")
        parser.add_argument("--website", default="", help="URL shown in the directory meta")
        parser.add_argument("--caa-identity", action="append", default=[], help="CAA identity (repeatable)")

    def handle(self, *args: Any, **opts: Any) -> None:
        endpoint = create_endpoint(
            name=opts["name"],
            ca=get_ca(opts["ca"]),
            profile=get_profile(opts["profile"]),
            allowed_identifiers=opts["allow"],
            eab_required=opts["eab_required"],
            validity_days=opts["validity_days"],
            key_types=opts["key_type"],
            terms_of_service=opts["terms_of_service"],
            website=opts["website"],
            caa_identities=opts["caa_identity"],
            actor=self.actor(),
        )
        self.stdout.write(f"created ACME endpoint {endpoint.name}: {directory_url(endpoint.name)}")
