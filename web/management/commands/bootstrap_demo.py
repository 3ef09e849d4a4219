"""``manage.py bootstrap_demo``: create a demo root and issuing CA when no CA exists."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.models import CertificateAuthority
from pki.x509.names import parse_subject


class Command(BaseCommand):
    """Idempotent: does nothing when a CA already exists."""

    help = __doc__

    def handle(self, *args: Any, **opts: Any) -> None:
        if CertificateAuthority.objects.exists():
            names = ", ".join(CertificateAuthority.objects.values_list("name", flat=True))
            self.stdout.write(f"CAs present: {names}")
            return
        root = create_root_ca(
            name="root",
            subject=parse_subject("CN=KMI Demo Root CA,O=KMI Demo"),
            key_type="ec-p384",
            validity_days=3650,
            actor="system:bootstrap",
        )
        issuing = create_intermediate_ca(
            name="issuing",
            parent=root,
            subject=parse_subject("CN=KMI Demo Issuing CA,O=KMI Demo"),
            key_type="ec-p256",
            validity_days=1825,
            path_length=0,
            actor="system:bootstrap",
        )
        self.stdout.write(f"created demo CAs: {root.name} -> {issuing.name}")
