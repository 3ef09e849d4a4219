"""``issue_service_cert --name kmi.example.test --out /certs``: KMI's own TLS certificate from its own CA.

Writes ``<out>/<name>.key`` (made once, mode 0600) and ``<out>/<name>.crt`` (certificate and
chain) and does nothing while the certificate is current; the lifecycle job
``pki.signing.renew_service_certificates`` renews it from ``KMI_SERVICE_CERT_*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from pki.conf import lifecycle_settings
from pki.lifecycle import ensure_service_certificate
from pki.management.base import PKICommand, get_ca, get_profile


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        conf = lifecycle_settings()
        parser.add_argument(
            "--name",
            action="append",
            default=[],
            help="DNS name (repeatable; the first names the files); default KMI_SERVICE_CERT_NAMES",
        )
        parser.add_argument(
            "--out", default=conf.service_cert_dir, help="folder (default KMI_SERVICE_CERT_DIR)"
        )
        parser.add_argument("--ca", default=conf.service_ca, help="issuing CA (default KMI_SERVICE_CA)")
        parser.add_argument("--profile", default=conf.service_profile, help="profile (default tls-server)")
        parser.add_argument("--renew-days", type=int, default=conf.service_renew_days)

    def handle(self, *args: Any, **opts: Any) -> None:
        names = tuple(opts["name"]) or lifecycle_settings().service_cert_names
        if not names or not opts["out"]:
            raise ValueError("give --name and --out (or set KMI_SERVICE_CERT_NAMES and KMI_SERVICE_CERT_DIR)")
        cert, changed = ensure_service_certificate(
            names=names,
            out_dir=Path(opts["out"]),
            ca=get_ca(opts["ca"]),
            profile=get_profile(opts["profile"]),
            renew_days=opts["renew_days"],
            actor=self.actor(),
        )
        verb = "issued" if changed else "current"
        self.stdout.write(
            f"{verb}: {Path(opts['out']) / names[0]}.crt serial {cert.serial}, "
            f"valid until {cert.not_after:%Y-%m-%d %H:%M:%S}Z"
        )
