"""The npm ``acme-client``, unmodified, against KMI's ACME server on a live server.

``tests/interop/node/acme_flow.js`` registers with external account binding, orders, answers
http-01 from its own server (tests.acme_support.port), finalizes, downloads, rolls the account key (the old
key is refused afterwards) and revokes. ``.ci/run`` installs the client (``npm ci``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from django.conf import settings
from django.test import override_settings

import pki.conf
import pki.keys.registry
from pki.acme.endpoints import create_eab_key, create_endpoint
from pki.acme.locations import directory_url
from pki.authorities import create_intermediate_ca, create_root_ca
from pki.models import AcmeAccount, AuditEvent, Certificate, Profile
from pki.x509.names import parse_subject
from tests.acme_support import LocalDNS, port

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

DNS_PORT, HTTP01_PORT = port(5), port(6)
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def kmi_url(live_server) -> Iterator[str]:
    dns = LocalDNS(DNS_PORT).start()
    kmi = {**settings.KMI, "BASE_URL": live_server.url}
    acme = {
        **settings.KMI_ACME,
        "HTTP01_PORT": HTTP01_PORT,
        "DNS_RESOLVERS": f"127.0.0.1:{DNS_PORT}",
        "VALIDATE_INLINE": True,
        "VALIDATION_TIMEOUT": 5,
    }
    with override_settings(KMI=kmi, KMI_ACME=acme):
        pki.conf.reset()
        pki.keys.registry.reset()
        yield live_server.url
    pki.conf.reset()
    pki.keys.registry.reset()
    dns.stop()


def test_acme_client_eab_order_rollover_and_revoke(kmi_url):
    assert (NODE_DIR / "node_modules" / "acme-client").is_dir(), "run: npm ci --prefix tests/interop/node"
    root = create_root_ca(
        name="root", subject=parse_subject("CN=Node Root"), key_type="ec-p256", actor="test"
    )
    issuing = create_intermediate_ca(
        name="issuing",
        parent=root,
        subject=parse_subject("CN=Node Issuing"),
        key_type="ec-p256",
        actor="test",
    )
    endpoint = create_endpoint(
        name="node",
        ca=issuing,
        profile=Profile.objects.get(name="tls-server"),
        allowed_identifiers=["*.example.test"],
        eab_required=True,
        actor="test",
    )
    eab, hmac_key = create_eab_key(endpoint=endpoint, actor="test")
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(NODE_DIR / "acme_flow.js")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "ACME_DIRECTORY": directory_url("node"),
            "ACME_DOMAIN": "node.example.test",
            "ACME_HTTP01_PORT": str(HTTP01_PORT),
            "ACME_EAB_KID": eab.key_id,
            "ACME_EAB_HMAC": hmac_key,
        },
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["orderStatus"] == "valid"
    assert out["oldKeyRefused"] is True, out
    assert "signature does not verify" in out["oldKeyError"]
    chain = x509.load_pem_x509_certificates(out["certificate"].encode())
    assert chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["node.example.test"]
    row = Certificate.objects.get(serial=format(chain[0].serial_number, "x"))
    assert row.revocation_reason == "superseded"
    account = AcmeAccount.objects.get()
    assert account.eab_key == eab
    assert out["accountUrl"].endswith(account.token)
    assert AuditEvent.objects.filter(action="acme.account.key_changed", object_id=str(account.pk)).exists()
