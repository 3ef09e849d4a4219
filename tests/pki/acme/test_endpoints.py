"""Endpoint administration: policy checks, EAB keys, the CLI."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from pki.acme.conf import acme_settings
from pki.acme.endpoints import check_identifier_allowed, create_eab_key, create_endpoint, parse_identifier
from pki.acme.exceptions import Malformed, RejectedIdentifier, UnsupportedIdentifier
from pki.exceptions import PolicyViolation
from pki.models import AcmeEndpoint, AcmeExternalAccountKey, AuditEvent
from pki.x509.names import SAN

pytestmark = pytest.mark.django_db


def test_create_endpoint_normalises_patterns_and_audits(issuing_ca, profile):
    endpoint = create_endpoint(
        name="e",
        ca=issuing_ca,
        profile=profile("tls-server"),
        allowed_identifiers=["*.Example.test", "10.0.0.0/8"],
        actor="t",
    )
    assert endpoint.allowed_identifiers == ["dns:*.example.test", "ip:10.0.0.0/8"]
    assert AuditEvent.objects.filter(action="acme.endpoint.created").count() == 1
    check_identifier_allowed(endpoint, SAN("dns", "www.example.test"))
    check_identifier_allowed(endpoint, SAN("ip", "10.2.3.4"))
    with pytest.raises(RejectedIdentifier):
        check_identifier_allowed(endpoint, SAN("dns", "a.b.example.test"))


def test_identifiers_outside_the_ca_name_constraints_are_rejected(issuing_ca, profile):
    issuing_ca.name_constraints = {"permitted": ["dns:corp.test"], "excluded": []}
    issuing_ca.save()
    endpoint = create_endpoint(
        name="e", ca=issuing_ca, profile=profile("tls-server"), allowed_identifiers=["**.test"], actor="t"
    )
    check_identifier_allowed(endpoint, SAN("dns", "www.corp.test"))
    with pytest.raises(RejectedIdentifier):
        check_identifier_allowed(endpoint, SAN("dns", "www.other.test"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"profile_name": "code-signing"}, "operator"),
        ({"key_types": ["dsa"]}, "unknown key type"),
        ({"allowed_identifiers": ["email:*@x.test"]}, "dns or ip"),
        ({"validity_days": 5000}, "exceeds"),
    ],
)
def test_bad_endpoint_policy_is_refused(issuing_ca, profile, kwargs, match):
    name = kwargs.pop("profile_name", "tls-server")
    with pytest.raises(PolicyViolation, match=match):
        create_endpoint(name="e", ca=issuing_ca, profile=profile(name), actor="t", **kwargs)
    assert not AcmeEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"type": "dns"}, Malformed),
        ({"type": "dns", "value": "Upper.example.test"}, RejectedIdentifier),
        ({"type": "ip", "value": "999.1.1.1"}, Malformed),
        ({"type": "ip", "value": "::0001"}, Malformed),
        ({"type": "email", "value": "a@b.test"}, UnsupportedIdentifier),
    ],
)
def test_bad_identifiers(raw, error):
    with pytest.raises(error):
        parse_identifier(raw)


def test_eab_keys_are_random_and_audited(issuing_ca, profile):
    endpoint = create_endpoint(name="e", ca=issuing_ca, profile=profile("tls-server"), actor="t")
    first, secret = create_eab_key(endpoint=endpoint, actor="t")
    second, other = create_eab_key(endpoint=endpoint, actor="t")
    assert first.key_id != second.key_id
    assert secret != other
    assert len(secret) == 43
    assert AuditEvent.objects.filter(action="acme.eab_key.created").count() == 2


def test_cli_creates_an_endpoint_and_prints_an_eab_key_once(issuing_ca, django_user_model):
    django_user_model.objects.create(username="alice")
    out = io.StringIO()
    call_command(
        "create_acme_endpoint",
        "--name",
        "corp",
        "--ca",
        "issuing",
        "--profile",
        "tls-server",
        "--eab-required",
        "--allow",
        "*.example.test",
        "--allow",
        "10.0.0.0/8",
        stdout=out,
    )
    assert "http://pki.example.test/acme/corp/directory" in out.getvalue()
    endpoint = AcmeEndpoint.objects.get(name="corp")
    assert endpoint.eab_required
    out = io.StringIO()
    call_command("create_eab_key", "--endpoint", "corp", "--user", "alice", stdout=out)
    key = AcmeExternalAccountKey.objects.get()
    assert f"key id:   {key.key_id}" in out.getvalue()
    assert key.user is not None
    assert key.user.username == "alice"
    with pytest.raises(CommandError, match="no ACME endpoint"):
        call_command("create_eab_key", "--endpoint", "nope")
    with pytest.raises(CommandError, match="no user"):
        call_command("create_eab_key", "--endpoint", "corp", "--user", "bob")


def test_settings_parse_resolvers(settings):
    settings.KMI_ACME = {**settings.KMI_ACME, "DNS_RESOLVERS": "10.0.0.53, 127.0.0.1:5353,[::1]:53"}
    assert acme_settings().dns_resolvers == (("10.0.0.53", 53), ("127.0.0.1", 5353), ("::1", 53))


@pytest.mark.parametrize(
    "pattern",
    ["*.exa mple.test", "a..example.test", ".example.test", "-a.example.test", "é.test", "dns:Up.test"],
)
def test_malformed_dns_patterns_are_refused(issuing_ca, profile, pattern):
    with pytest.raises(PolicyViolation, match="DNS name pattern"):
        create_endpoint(
            name="e", ca=issuing_ca, profile=profile("tls-server"), allowed_identifiers=[pattern], actor="t"
        )
    assert not AcmeEndpoint.objects.exists()


def test_duplicate_or_malformed_endpoint_names_are_refused(issuing_ca, profile):
    from pki.exceptions import AlreadyExists

    create_endpoint(name="e", ca=issuing_ca, profile=profile("tls-server"), actor="t")
    with pytest.raises(AlreadyExists):
        create_endpoint(name="e", ca=issuing_ca, profile=profile("tls-server"), actor="t")
    with pytest.raises(PolicyViolation, match="endpoint name"):
        create_endpoint(name="Bad_Name", ca=issuing_ca, profile=profile("tls-server"), actor="t")
    assert AcmeEndpoint.objects.count() == 1


def test_eab_hmac_keys_are_sealed_under_the_kek_and_bound_to_their_row(issuing_ca, profile):
    import base64

    from django.db import connection

    from pki.exceptions import KeyBackendError
    from pki.models import AcmeExternalAccountKey

    endpoint = create_endpoint(name="e", ca=issuing_ca, profile=profile("tls-server"), actor="t")
    first, secret = create_eab_key(endpoint=endpoint, actor="t")
    second, _ = create_eab_key(endpoint=endpoint, actor="t")
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    with connection.cursor() as cursor:
        cursor.execute("SELECT sealed_hmac_key FROM pki_acmeexternalaccountkey WHERE id = %s", [first.pk])
        stored = bytes(cursor.fetchone()[0])
    assert raw not in stored  # nothing in clear in the database
    assert first.kek_id == "test-1"
    assert AcmeExternalAccountKey.objects.get(pk=first.pk).hmac_key() == raw
    # A sealed key copied onto another row does not open there.
    AcmeExternalAccountKey.objects.filter(pk=second.pk).update(sealed_hmac_key=stored)
    with pytest.raises(KeyBackendError, match="does not decrypt"):
        AcmeExternalAccountKey.objects.get(pk=second.pk).hmac_key()
