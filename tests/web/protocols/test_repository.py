"""The HTTP repository: CRLs and CA certificates with RFC 2585 types, validators and caching."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from cryptography import x509
from django.utils.http import http_date

from pki.crl import publish_crl, set_crl_shards
from pki.locations import ca_certificate_pem_url, ca_certificate_url, ca_chain_url, crl_pem_url, crl_url
from tests.conftest import NOW

pytestmark = pytest.mark.django_db

BASE = "http://pki.example.test"


def path_of(url: str) -> str:
    assert url.startswith(BASE)
    return url[len(BASE) :]


@pytest.fixture
def published(issuing_ca):
    with time_machine.travel(NOW, tick=False):
        return publish_crl(ca=issuing_ca, actor="t", now=NOW)


def test_crl_is_served_as_der_with_caching_headers_tied_to_its_dates(client, published):
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        response = client.get(path_of(crl_url("issuing")))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-crl"
    assert response.content == bytes(published.der)
    assert response["ETag"] == f'"{published.sha256}"'
    assert response["Last-Modified"] == http_date(published.this_update.timestamp())
    assert response["Expires"] == http_date(published.next_update.timestamp())
    assert response["Cache-Control"] == "public, max-age=300, no-transform"
    assert response["Content-Disposition"] == 'attachment; filename="issuing.crl"'


def test_max_age_never_runs_past_next_update(client, published):
    with time_machine.travel(published.next_update - dt.timedelta(seconds=40), tick=False):
        response = client.get("/crl/issuing.crl")
    assert response["Cache-Control"] == "public, max-age=40, no-transform"
    with time_machine.travel(published.next_update + dt.timedelta(hours=1), tick=False):
        response = client.get("/crl/issuing.crl")
    assert response["Cache-Control"] == "public, max-age=0, no-transform"


def test_crl_pem_has_the_same_crl(client, published):
    response = client.get(path_of(crl_pem_url("issuing")))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response["Content-Disposition"] == 'attachment; filename="issuing.crl.pem"'
    assert x509.load_pem_x509_crl(response.content) == x509.load_der_x509_crl(bytes(published.der))
    assert response["ETag"] != f'"{published.sha256}"'


def test_head_has_headers_and_length_but_no_body(client, published):
    response = client.head("/crl/issuing.crl")
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == str(len(bytes(published.der)))
    assert response["ETag"] == f'"{published.sha256}"'


def test_conditional_get_answers_304(client, published):
    by_etag = client.get("/crl/issuing.crl", HTTP_IF_NONE_MATCH=f'"{published.sha256}"')
    assert by_etag.status_code == 304
    assert by_etag.content == b""
    assert by_etag["ETag"] == f'"{published.sha256}"'
    by_date = client.get(
        "/crl/issuing.crl", HTTP_IF_MODIFIED_SINCE=http_date(published.this_update.timestamp())
    )
    assert by_date.status_code == 304
    stale = client.get("/crl/issuing.crl", HTTP_IF_NONE_MATCH='"0000"')
    assert stale.status_code == 200


def test_newest_crl_is_served(client, issuing_ca, published):
    newer = publish_crl(ca=issuing_ca, actor="t", now=NOW + dt.timedelta(hours=1))
    response = client.get("/crl/issuing.crl")
    assert response.content == bytes(newer.der)


def test_missing_crl_is_a_503_with_a_clear_text(client, issuing_ca):
    response = client.get("/crl/issuing.crl")
    assert response.status_code == 503
    assert "published" in response.content.decode()
    assert response["Retry-After"] == "30"


def test_shard_urls_serve_their_partition(client, issuing_ca):
    set_crl_shards(ca=issuing_ca, shards=2, actor="t", now=NOW)
    shard = publish_crl(ca=issuing_ca, shard=2, actor="t", now=NOW)
    response = client.get(path_of(crl_url("issuing", 2)))
    assert response.status_code == 200
    assert response.content == bytes(shard.der)
    assert response["Content-Disposition"] == 'attachment; filename="issuing-2.crl"'
    assert client.get("/crl/issuing-1.crl").status_code == 503  # a partition not yet published
    assert client.get("/crl/issuing-1.crl.pem").status_code == 503


@pytest.mark.parametrize(
    "path",
    [
        "/crl/nope.crl",
        "/crl/issuing-3.crl",  # beyond the partitions
        "/crl/issuing-0.crl",
        "/crl/issuing-01.crl",
        "/crl/issuing--1.crl",
        "/crl/issuing-99999999999999999999.crl",
        "/crl/ISSUING.crl",
        "/crl/issuing.CRL",
        "/crl/issuing",
        "/crl/.crl",
        "/crl/issuing.crl/extra",
        "/crl/%00.crl",
        "/ca/nope.cer",
        "/ca/nope.pem",
        "/ca/nope-chain.pem",
        "/ca/issuing.der",
        "/ca/" + "a" * 300 + ".cer",
    ],
)
def test_unknown_paths_are_404_never_500(client, issuing_ca, published, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
@pytest.mark.parametrize("path", ["/crl/issuing.crl", "/ca/issuing.cer", "/ca/issuing-chain.pem"])
def test_wrong_methods_are_405(client, published, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert sorted(response["Allow"].split(", ")) == ["GET", "HEAD"]


def test_ca_certificate_is_served_as_der(client, issuing_ca):
    response = client.get(path_of(ca_certificate_url("issuing")))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-cert"
    assert response["Content-Disposition"] == 'attachment; filename="issuing.cer"'
    assert response.content == bytes(issuing_ca.own_certificate().der)
    etag = response["ETag"]
    assert client.get("/ca/issuing.cer", HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_ca_certificate_pem_and_chain(client, root_ca, issuing_ca):
    single = client.get(path_of(ca_certificate_pem_url("issuing")))
    assert single.status_code == 200
    assert x509.load_pem_x509_certificates(single.content) == [issuing_ca.x509_certificate()]
    chain = client.get(path_of(ca_chain_url("issuing")))
    assert chain.status_code == 200
    assert chain["Content-Type"] == "application/pem-certificate-chain"
    assert chain["Content-Disposition"] == 'attachment; filename="issuing-chain.pem"'
    assert x509.load_pem_x509_certificates(chain.content) == [
        issuing_ca.x509_certificate(),
        root_ca.x509_certificate(),
    ]
    head = client.head("/ca/issuing-chain.pem")
    assert head.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == str(len(chain.content))


def test_crl_requests_stay_lean(client, published, django_assert_num_queries):
    with django_assert_num_queries(2):  # the CA, the CRL's dates and size: no DER for HEAD
        client.head("/crl/issuing.crl")
    with django_assert_num_queries(2):
        client.get("/crl/issuing.crl", HTTP_IF_NONE_MATCH=f'"{published.sha256}"')
    with django_assert_num_queries(3):
        client.get("/crl/issuing.crl")


def test_each_ca_generation_is_served_at_its_own_urls(client, issuing_ca, profile):
    """After a rollover the first generation's URLs keep answering for what it signed."""
    from pki.crl import set_crl_shards
    from pki.enrollment import sign_csr
    from pki.rotation import rollover_ca
    from tests.conftest import make_csr

    first = issuing_ca.x509_certificate()
    with time_machine.travel(NOW, tick=False):
        rollover_ca(ca=issuing_ca, actor="t", now=NOW)
        issuing_ca.refresh_from_db()
        set_crl_shards(ca=issuing_ca, shards=2, actor="t", now=NOW)
        leaf = sign_csr(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(sans=[x509.DNSName("www.example.test")]),
            actor="t",
            now=NOW,
        )
        old_crl = publish_crl(ca=issuing_ca, generation=1, actor="t", now=NOW)
        new_crl = publish_crl(ca=issuing_ca, actor="t", now=NOW)
        shard_crl = publish_crl(ca=issuing_ca, shard=leaf.crl_shard, actor="t", now=NOW)
        second = issuing_ca.x509_certificate()
        served = {
            path: client.get(path)
            for path in (
                "/ca/issuing.cer",
                "/ca/issuing.g2.cer",
                "/crl/issuing.crl",
                "/crl/issuing.g2.crl",
                f"/crl/issuing.g2-{leaf.crl_shard}.crl",
                "/ca/issuing.g2-chain.pem",
                "/crl/issuing.g3.crl",
                "/ca/issuing.g3.cer",
                "/ca/issuing.g1.cer",
            )
        }
    assert x509.load_der_x509_certificate(served["/ca/issuing.cer"].content) == first
    assert x509.load_der_x509_certificate(served["/ca/issuing.g2.cer"].content) == second
    assert served["/ca/issuing.g2.cer"]["Content-Disposition"] == 'attachment; filename="issuing.g2.cer"'
    assert served["/crl/issuing.crl"].content == bytes(old_crl.der)
    assert served["/crl/issuing.g2.crl"].content == bytes(new_crl.der)
    assert served[f"/crl/issuing.g2-{leaf.crl_shard}.crl"].content == bytes(shard_crl.der)
    chain = x509.load_pem_x509_certificates(served["/ca/issuing.g2-chain.pem"].content)
    assert chain == [second, issuing_ca.parent.x509_certificate()]  # type: ignore[union-attr]
    for missing in ("/crl/issuing.g3.crl", "/ca/issuing.g3.cer", "/ca/issuing.g1.cer"):
        assert served[missing].status_code == 404, missing
    # The partition's IssuingDistributionPoint names the partition URL of generation 2.
    idp = x509.load_der_x509_crl(bytes(shard_crl.der)).extensions.get_extension_for_class(
        x509.IssuingDistributionPoint
    )
    assert idp.value.full_name[0].value.endswith(f"/crl/issuing.g2-{leaf.crl_shard}.crl")  # type: ignore[index]
