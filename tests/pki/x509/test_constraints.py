"""Name constraints (RFC 5280 §4.2.1.10): parsing, narrowing by a child CA, and leaf checks."""

from __future__ import annotations

import pytest
from cryptography import x509

from pki.authorities import create_intermediate_ca
from pki.enrollment import sign_csr
from pki.exceptions import NameNotAllowed, PolicyViolation
from pki.models import Certificate
from pki.x509.constraints import NameConstraints, Subtree
from pki.x509.names import SAN, parse_subject
from tests.conftest import NOW, make_csr


def nc(permitted=(), excluded=()) -> NameConstraints:
    return NameConstraints.from_lists(list(permitted), list(excluded))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example.test", "must look like dns:"),
        ("dns:", "must look like dns:"),
        ("dns:*.example.test", "wildcard"),
        ("ip:10.0.0.1/8", "is not an IP network"),  # host bits set
        ("x400:foo", "type 'x400' is not supported"),
    ],
)
def test_bad_subtrees_are_refused(text, message):
    with pytest.raises((PolicyViolation, NameNotAllowed), match=message):
        Subtree.parse(text)


def test_unknown_keys_are_refused():
    with pytest.raises(PolicyViolation, match="unknown keys: allowed"):
        NameConstraints.from_json({"allowed": []})


def test_json_round_trip_and_extension():
    c = nc(
        ["dns:example.test", "ip:10.0.0.0/8", "email:example.test", "uri:example.test"],
        ["dns:bad.example.test"],
    )
    assert NameConstraints.from_json(c.to_json()) == c
    ext = c.extension()
    assert ext is not None
    assert ext.permitted_subtrees is not None
    assert [type(g).__name__ for g in ext.permitted_subtrees] == [
        "DNSName",
        "IPAddress",
        "RFC822Name",
        "UniformResourceIdentifier",
    ]
    assert ext.excluded_subtrees == [x509.DNSName("bad.example.test")]
    assert nc().extension() is None
    assert not nc()


@pytest.mark.parametrize(
    ("constraint", "kind", "value", "inside"),
    [
        ("dns:example.test", "dns", "example.test", True),
        ("dns:example.test", "dns", "www.example.test", True),
        ("dns:example.test", "dns", "*.www.example.test", True),
        ("dns:example.test", "dns", "badexample.test", False),
        ("dns:.example.test", "dns", "example.test", False),  # leading dot: subdomains only
        ("dns:.example.test", "dns", "a.example.test", True),
        ("ip:10.0.0.0/8", "ip", "10.9.9.9", True),
        ("ip:10.0.0.0/8", "ip", "11.0.0.1", False),
        ("ip:10.0.0.0/8", "ip", "not-an-ip", False),
        ("email:example.test", "email", "a@example.test", True),
        ("email:example.test", "email", "a@sub.example.test", True),
        ("email:a@example.test", "email", "b@example.test", False),
        ("uri:example.test", "uri", "https://www.example.test:8443/x", True),
        ("uri:example.test", "uri", "https://example.org/", False),
        ("dns:example.test", "ip", "10.0.0.1", False),
    ],
)
def test_subtree_membership(constraint, kind, value, inside):
    assert Subtree.parse(constraint).contains_value(kind, value) is inside


def test_leaf_names_are_checked_against_permitted_and_excluded():
    c = nc(["dns:example.test", "ip:10.0.0.0/8"], ["dns:secret.example.test"])
    c.check_sans([SAN("dns", "www.example.test"), SAN("ip", "10.1.1.1"), SAN("email", "a@any.test")])
    with pytest.raises(NameNotAllowed, match=r"dns:www\.example\.org is outside the CA's permitted names"):
        c.check_sans([SAN("dns", "www.example.org")])
    with pytest.raises(NameNotAllowed, match=r"dns:db\.secret\.example\.test is excluded"):
        c.check_sans([SAN("dns", "db.secret.example.test")])
    with pytest.raises(NameNotAllowed, match=r"ip:192\.0\.2\.1 is outside"):
        c.check_sans([SAN("ip", "192.0.2.1")])


def test_child_may_narrow_and_inherits_the_rest():
    parent = nc(["dns:example.test", "ip:10.0.0.0/8"], ["dns:secret.example.test"])
    child = parent.narrowed_by(nc(["dns:eng.example.test"], ["ip:10.9.0.0/16"]))
    assert child.to_json() == {
        "permitted": ["dns:eng.example.test", "ip:10.0.0.0/8"],
        "excluded": ["ip:10.9.0.0/16", "dns:secret.example.test"],
    }


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (["dns:example.org"], "outside the parent CA's permitted names"),
        (["ip:192.168.0.0/16"], "outside the parent CA's permitted names"),
        (["ip:2001:db8::/32"], "outside the parent CA's permitted names"),  # another IP version
        (["dns:x.secret.example.test"], "excluded by the parent CA"),
    ],
)
def test_child_may_not_widen(child, message):
    parent = nc(["dns:example.test", "ip:10.0.0.0/8"], ["dns:secret.example.test"])
    with pytest.raises(NameNotAllowed, match=message):
        parent.narrowed_by(nc(child))


@pytest.mark.django_db
def test_constrained_ca_issues_inside_and_refuses_outside(root_ca, profile):
    ca = create_intermediate_ca(
        name="eng",
        parent=root_ca,
        subject=parse_subject("CN=Eng CA"),
        name_constraints={"permitted": ["dns:eng.example.test"]},
        path_length=0,
        actor="t",
        now=NOW,
    )
    ext = ca.x509_certificate().extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    assert ext.value.permitted_subtrees == [x509.DNSName("eng.example.test")]
    inside = make_csr(subject="CN=api.eng.example.test")
    assert sign_csr(ca=ca, profile=profile("tls-server"), csr=inside, actor="t", now=NOW)
    before = Certificate.objects.count()
    with pytest.raises(NameNotAllowed, match=r"dns:www\.example\.test is outside the CA's permitted names"):
        sign_csr(ca=ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    assert Certificate.objects.count() == before
