"""certbot, unmodified, against KMI's ACME server on a live server.

http-01 through certbot's standalone server on a high port (EC and RSA keys); dns-01 through a
manual auth hook that writes TXT records for a small DNS server KMI's resolver setting points
at; ``renew --force-renewal``; ``revoke``, then the CRL served by KMI lists the certificate and
``openssl ocsp`` at the certificate's AIA OCSP URL answers ``revoked``.
Ports from tests.acme_support.port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID
from django.conf import settings
from django.test import override_settings

import pki.conf
import pki.keys.registry
from pki.acme.endpoints import create_endpoint
from pki.acme.locations import directory_url
from pki.authorities import create_intermediate_ca, create_root_ca
from pki.crl import publish_crl
from pki.models import AcmeOrder, Certificate, Profile
from pki.x509.names import parse_subject
from tests.acme_support import LocalDNS, port

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

DNS_PORT, HTTP01_PORT = port(3), port(4)
CERTBOT = str(Path(sys.executable).with_name("certbot"))


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory) -> Iterator[LocalDNS]:
    server = LocalDNS(DNS_PORT, zone_dir=tmp_path_factory.mktemp("zone")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kmi_url(live_server, dns_server) -> Iterator[str]:
    """Point KMI_BASE_URL at the live server and KMI's validator at the local ports."""
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


@pytest.fixture
def directory(kmi_url) -> str:
    root = create_root_ca(
        name="root", subject=parse_subject("CN=KMI ACME Test Root"), key_type="ec-p256", actor="test"
    )
    issuing = create_intermediate_ca(
        name="issuing",
        parent=root,
        subject=parse_subject("CN=KMI ACME Test Issuing"),
        key_type="ec-p256",
        path_length=0,
        actor="test",
    )
    create_endpoint(
        name="certbot",
        ca=issuing,
        profile=Profile.objects.get(name="tls-server"),
        allowed_identifiers=["**.example.test"],
        actor="test",
    )
    return directory_url("certbot")


def certbot(tmp: Path, directory: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run certbot with its state in ``tmp``; fail with its log when it fails."""
    cmd = [
        CERTBOT,
        *args,
        "--non-interactive",
        "--server",
        directory,
        "--config-dir",
        str(tmp / "config"),
        "--work-dir",
        str(tmp / "work"),
        "--logs-dir",
        str(tmp / "logs"),
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        log = (tmp / "logs" / "letsencrypt.log").read_text()[-6000:]
        pytest.fail(f"certbot {args[0]} failed ({result.returncode}):\n{result.stderr}\n{log}")
    return result.stdout


def http01_args(name: str, domain: str) -> list[str]:
    return [
        "certonly",
        "--standalone",
        "--http-01-port",
        str(HTTP01_PORT),
        "--http-01-address",
        "127.0.0.1",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--cert-name",
        name,
        "-d",
        domain,
    ]


def leaf(tmp: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((tmp / "config" / "live" / name / "cert.pem").read_bytes())


def test_certbot_http01_issues_ec_and_rsa_certificates(tmp_path, directory):
    certbot(tmp_path, directory, *http01_args("ec", "ec.example.test"), "--key-type", "ecdsa")
    certbot(
        tmp_path,
        directory,
        *http01_args("rsa", "rsa.example.test"),
        "--key-type",
        "rsa",
        "--rsa-key-size",
        "2048",
    )
    ec_cert, rsa_cert = leaf(tmp_path, "ec"), leaf(tmp_path, "rsa")
    assert isinstance(ec_cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(rsa_cert.public_key(), rsa.RSAPublicKey)
    for cert, name in ((ec_cert, "ec.example.test"), (rsa_cert, "rsa.example.test")):
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [name]
        assert Certificate.objects.filter(serial=format(cert.serial_number, "x"), ca__name="issuing").exists()
    chain = x509.load_pem_x509_certificates(
        (tmp_path / "config" / "live" / "ec" / "fullchain.pem").read_bytes()
    )
    assert [c.subject.rfc4514_string() for c in chain[1:]] == [
        "CN=KMI ACME Test Issuing",
        "CN=KMI ACME Test Root",
    ]


def test_certbot_dns01_wildcard_then_renew_and_revoke(tmp_path, kmi_url, directory, dns_server, ocsp_env):
    # ocsp_env: the signals' Celery tasks run inline, as workers would: every certificate is
    # pre-signed when issued and re-signed when revoked (the responder's own Redis prefix).
    assert dns_server.zone_dir is not None
    hook = tmp_path / "auth-hook.sh"
    hook.write_text(
        '#!/bin/sh\necho "$CERTBOT_VALIDATION" >> "$KMI_TEST_ZONE/_acme-challenge.$CERTBOT_DOMAIN"\n'
    )
    hook.chmod(0o755)
    env = {"KMI_TEST_ZONE": str(dns_server.zone_dir)}
    certbot(
        tmp_path,
        directory,
        "certonly",
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        str(hook),
        "--agree-tos",
        "--register-unsafely-without-email",
        "--cert-name",
        "wild",
        "-d",
        "*.dns.example.test",
        "-d",
        "dns.example.test",
        env=env,
    )
    first = leaf(tmp_path, "wild")
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["*.dns.example.test", "dns.example.test"]

    certbot(
        tmp_path,
        directory,
        "renew",
        "--force-renewal",
        "--cert-name",
        "wild",
        "--no-random-sleep-on-renew",
        env=env,
    )
    renewed = leaf(tmp_path, "wild")
    assert renewed.serial_number != first.serial_number
    assert AcmeOrder.objects.filter(status="valid").count() == 2

    certbot(
        tmp_path,
        directory,
        "revoke",
        "--cert-name",
        "wild",
        "--reason",
        "superseded",
        "--no-delete-after-revoke",
    )
    row = Certificate.objects.get(serial=format(renewed.serial_number, "x"))
    assert row.revoked_at is not None
    assert row.revocation_reason == "superseded"
    assert Certificate.objects.get(serial=format(first.serial_number, "x")).revoked_at is None

    # The CRL the certificate points at, fetched from KMI over HTTP, lists it as superseded.
    assert row.ca is not None
    publish_crl(ca=row.ca, actor="test")
    [cdp] = renewed.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = cdp.full_name[0].value
    assert crl_url.startswith(kmi_url)
    with urllib.request.urlopen(crl_url, timeout=10) as response:
        crl = x509.load_der_x509_crl(response.read())
    entry = crl.get_revoked_certificate_by_serial_number(renewed.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    )
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is None

    # The OCSP responder the certificate's AIA names, asked by openssl, says revoked (superseded).
    aia = renewed.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    [ocsp_url] = [
        d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
    assert ocsp_url == f"{kmi_url}/ocsp/issuing"
    issuing, root = x509.load_pem_x509_certificates(
        (tmp_path / "config" / "live" / "wild" / "chain.pem").read_bytes()
    )
    (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        [
            "openssl", "ocsp", "-issuer", "issuing.pem", "-cert", "config/live/wild/cert.pem",
            "-url", ocsp_url, "-CAfile", "root.pem", "-verify_other", "issuing.pem", "-resp_text",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert "Response verify OK" in out
    assert "config/live/wild/cert.pem: revoked" in out
    assert "Reason: superseded" in out
