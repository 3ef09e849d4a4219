"""``show_ca NAME``: a CA's state and its generations (keys), with the URLs each one answers at."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.locations import ca_certificate_url, crl_url, ocsp_url
from pki.management.base import PKICommand, get_ca
from pki.models import CAGeneration


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="CA name")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["name"])
        parent = f", parent {ca.parent.name}" if ca.parent is not None else " (root)"
        self.stdout.write(f"CA {ca.name}{parent}: {ca.state}, generation {ca.generation} issues")
        generations = CAGeneration.objects.filter(ca=ca).select_related(
            "key", "certificate", "link_from_previous", "link_to_previous"
        )
        for g in generations.order_by("number"):
            cert = g.certificate
            validity = (
                f"until {cert.not_after:%Y-%m-%d %H:%M:%S}Z, serial {cert.serial}"
                if cert
                else "no certificate"
            )
            when = (
                f", takes over at {g.activates_at:%Y-%m-%d %H:%M:%S}Z"
                if g.activates_at and g.state == "pending"
                else ""
            )
            self.stdout.write(
                f"  generation {g.number}: {g.state}{when}; key {g.key_id} {g.key.key_type} "
                f"({g.key.backend}, {g.key.state}); {validity}"
            )
            name = g.repository_name
            self.stdout.write(
                f"    CRL {crl_url(name)}  OCSP {ocsp_url(name)}  CA {ca_certificate_url(name)}"
            )
            for label, link in (
                ("link from previous", g.link_from_previous),
                ("link to previous", g.link_to_previous),
            ):
                if link is not None:
                    self.stdout.write(f"    {label}: serial {link.serial}, until {link.not_after:%Y-%m-%d}")
