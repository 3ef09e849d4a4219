"""``create_scep_label --name L --ca CA --profile P [--challenge SECRET]``: a SCEP service at /scep/L.

Generates the label's RSA RA key in the key backend and has the CA certify it (RFC 8894 §2.1).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from pki.management.base import PKICommand, get_ca, get_profile
from pki.scep.labels import create_scep_label


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the label: /scep/<name>")
        parser.add_argument("--ca", required=True, help="the issuing CA")
        parser.add_argument("--profile", required=True, help="the issuance profile, e.g. tls-client")
        parser.add_argument(
            "--challenge",
            default="",
            help="a static challenge password every device may use (else only one-time ones)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        label = create_scep_label(
            name=opts["name"],
            ca=get_ca(opts["ca"]),
            profile=get_profile(opts["profile"]),
            challenge=opts["challenge"],
            actor=self.actor(),
        )
        base = str(settings.KMI.get("BASE_URL", "")).rstrip("/")
        self.stdout.write(
            f"created SCEP label {label.name}: {base}/scep/{label.name} "
            f"(RA certificate {label.ra_certificate.serial})"
        )
