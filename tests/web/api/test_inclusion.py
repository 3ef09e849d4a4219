"""GET /api/v1/certificates/<id>/inclusion/: a certificate's leaf, tree head and audit path."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import time_machine
from cryptography import x509

from pki.enrollment import enroll
from pki.models import Profile
from pki.transparency import log as ct
from pki.transparency import merkle
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def _issue(ca, owner):
    csr = make_csr(subject="CN=host.example.test", sans=[x509.DNSName("host.example.test")])
    return enroll(
        ca=ca, profile=Profile.objects.get(name="tls-server"), csr=csr, actor="test", requester=owner.user
    ).certificate


def test_the_owner_gets_a_receipt_that_verifies_and_others_get_nothing(issuing_ca, requester, make_actor):
    with time_machine.travel(NOW, tick=False):
        log = ct.create_log(name="kmi", actor="test")
        cert = _issue(issuing_ca, requester)
        url = f"/api/v1/certificates/{cert.pk}/inclusion/"
        queued = requester.client.get(url)
        assert queued.status_code == 409  # not yet under a signed tree head
        assert "retry within 60 s" in queued.json()["detail"]
        ct.tick(actor="test", now=NOW + dt.timedelta(minutes=1))
        body = requester.client.get(url).json()
    assert body["log"] == "kmi"
    assert body["log_id"] == base64.b64encode(bytes(log.log_id)).decode()
    assert body["tree_head"]["tree_size"] == 3
    leaf = base64.b64decode(body["leaf_hash"])
    assert merkle.verify_inclusion(
        leaf=leaf,
        index=body["leaf_index"],
        size=3,
        path=[base64.b64decode(h) for h in body["audit_path"]],
        root=base64.b64decode(body["tree_head"]["sha256_root_hash"]),
    )
    stranger = make_actor("stranger")
    assert stranger.client.get(url).status_code in (403, 404)
    assert requester.client.get(url, {"log": "nope"}).status_code == 404
    assert requester.client.get("/api/v1/certificates/999999/inclusion/").status_code == 404
