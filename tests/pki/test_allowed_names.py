"""Seeded profiles certify only the operator's names (KMI_ALLOWED_DOMAINS), never any name."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from django.core.exceptions import ImproperlyConfigured

from pki.enrollment import sign_csr
from pki.exceptions import NameNotAllowed
from pki.models import Certificate, CertificateRequest, Profile
from pki.profile_changes import update_profile
from pki.profiles import OPERATOR_NAMES
from pki.settings_registry import coerce
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def _csr(name: str) -> bytes:
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        subject = "CN=host"
    except ValueError:
        san, subject = x509.DNSName(name), f"CN={name}"
    return make_csr(subject=subject, sans=[san])


def _issues(ca, profile: str, name: str) -> bool:
    try:
        sign_csr(ca=ca, profile=Profile.objects.get(name=profile), csr=_csr(name), actor="ops", now=NOW)
    except NameNotAllowed:
        return False
    return True


def test_seeded_profiles_stand_for_the_operators_names():
    for name in ("tls-server", "tls-client", "tls-server-client"):
        patterns = Profile.objects.get(name=name).allowed_names
        assert OPERATOR_NAMES in patterns
        assert "dns:**" not in patterns
        assert "ip:0.0.0.0/0" not in patterns


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("www.google.com", False),
        ("google.com", False),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("www.example.test", True),
        ("db.corp.internal", True),
        ("printer.local", True),
        ("nas.home.arpa", True),
        ("localhost", True),
        ("10.1.2.3", True),
        ("172.31.0.1", True),
        ("192.168.1.1", True),
        ("127.0.0.1", True),
        ("fd00::1", True),
        ("::1", True),
    ],
)
def test_unset_the_seeded_profile_allows_only_special_use_names_and_private_ranges(issuing_ca, name, allowed):
    before = Certificate.objects.count(), CertificateRequest.objects.count()
    assert _issues(issuing_ca, "tls-server", name) is allowed
    if not allowed:  # bad input writes nothing
        assert (Certificate.objects.count(), CertificateRequest.objects.count()) == before


def test_the_operators_domains_allow_themselves_their_subdomains_and_their_networks(issuing_ca, kmi_settings):
    kmi_settings(ALLOWED_DOMAINS="corp.example.com, 192.0.2.0/24")
    assert _issues(issuing_ca, "tls-server", "corp.example.com")
    assert _issues(issuing_ca, "tls-server", "www.eu.corp.example.com")
    assert _issues(issuing_ca, "tls-server", "192.0.2.7")
    assert not _issues(issuing_ca, "tls-server", "evilcorp.example.com")
    assert not _issues(issuing_ca, "tls-server", "example.com")
    assert not _issues(issuing_ca, "tls-server", "www.example.test")  # set: only what it names
    assert not _issues(issuing_ca, "tls-server", "10.0.0.1")


def test_an_operator_edit_replaces_the_seeded_names(issuing_ca):
    profile = Profile.objects.get(name="tls-server")
    update_profile(profile=profile, changes={"allowed_names": ["dns:**.shop.test"]}, actor="admin")
    assert _issues(issuing_ca, "tls-server", "www.shop.test")
    assert not _issues(issuing_ca, "tls-server", "www.example.test")


@pytest.mark.parametrize("bad", ["*.example.test", "exa mple.test", "-bad.test", "10.0.0.0/33", "a..b"])
def test_a_malformed_allowed_domain_is_refused_at_start_up(bad):
    with pytest.raises(ImproperlyConfigured, match="KMI_ALLOWED_DOMAINS"):
        coerce("KMI_ALLOWED_DOMAINS", f"example.test,{bad}")


def test_allowed_domains_are_normalised():
    assert coerce("KMI_ALLOWED_DOMAINS", "Example.TEST., 10.0.0.1/8,,") == ("example.test", "10.0.0.0/8")
    assert coerce("KMI_ALLOWED_DOMAINS", None) == ()
