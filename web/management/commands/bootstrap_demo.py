"""``manage.py bootstrap_demo``: demo root and issuing CAs when no CA exists; the ACME endpoint,
EST label and SCEP label ``demo``; the transparency log ``kmi``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from pki.acme.endpoints import create_endpoint
from pki.acme.locations import directory_url
from pki.authorities import create_intermediate_ca, create_root_ca
from pki.conf import pki_settings
from pki.models import AcmeEndpoint, CertificateAuthority, Profile, TransparencyLog
from pki.transparency.log import create_log
from pki.x509.names import parse_subject
from web.devices_demo import ensure_demo_labels

ACTOR = "system:bootstrap"
DEMO_ENDPOINT = "demo"
DEMO_LOG = "kmi"
# Names reserved by RFC 6761 that never resolve on the internet: the demo endpoint cannot
# issue for a real name. ``make run`` pins them to 127.0.0.1 for the validator (KMI_ACME_HOSTS),
# so a client on this machine answers the challenge.
DEMO_IDENTIFIERS = (
    "example.test",
    "**.example.test",
    "localhost",
    "**.localhost",
    "127.0.0.1",
    "::1",
)


class Command(BaseCommand):
    """Idempotent: creates only what is missing (no CA at all; no endpoint named ``demo``)."""

    help = __doc__

    def handle(self, *args: Any, **opts: Any) -> None:
        self._cas()
        self._acme_endpoint()
        self._transparency_log()
        issuing = CertificateAuthority.objects.filter(name="issuing").first()
        if issuing is not None:
            for line in ensure_demo_labels(issuing):  # EST and SCEP labels "demo"
                self.stdout.write(line)

    def _cas(self) -> None:
        if CertificateAuthority.objects.exists():
            names = ", ".join(CertificateAuthority.objects.values_list("name", flat=True))
            self.stdout.write(f"CAs present: {names}")
            return
        root = create_root_ca(
            name="root",
            subject=parse_subject("CN=KMI Demo Root CA,O=KMI Demo"),
            key_type="ec-p384",
            validity_days=3650,
            actor=ACTOR,
        )
        issuing = create_intermediate_ca(
            name="issuing",
            parent=root,
            subject=parse_subject("CN=KMI Demo Issuing CA,O=KMI Demo"),
            key_type="ec-p256",
            validity_days=1825,
            path_length=0,
            actor=ACTOR,
        )
        self.stdout.write(f"created demo CAs: {root.name} -> {issuing.name}")

    def _acme_endpoint(self) -> None:
        if AcmeEndpoint.objects.filter(name=DEMO_ENDPOINT).exists():
            self.stdout.write(f"ACME endpoint present: {DEMO_ENDPOINT}")
            return
        issuing = CertificateAuthority.objects.filter(name="issuing").first()
        if issuing is None:
            self.stdout.write("no CA named issuing: no demo ACME endpoint (see create_acme_endpoint)")
            return
        create_endpoint(
            name=DEMO_ENDPOINT,
            ca=issuing,
            profile=Profile.objects.get(name="tls-server"),
            allowed_identifiers=DEMO_IDENTIFIERS,
            actor=ACTOR,
        )
        self.stdout.write(f"created ACME endpoint {DEMO_ENDPOINT}: {directory_url(DEMO_ENDPOINT)}")

    def _transparency_log(self) -> None:
        # Every issuance feeds the log ``kmi`` (issue 15): made once, with what is issued so far.
        if TransparencyLog.objects.filter(name=DEMO_LOG).exists():
            self.stdout.write(f"transparency log present: {DEMO_LOG}")
            return
        create_log(name=DEMO_LOG, actor=ACTOR)
        self.stdout.write(
            f"created transparency log {DEMO_LOG}: {pki_settings().base_url}/ct/{DEMO_LOG}/log.json"
        )
