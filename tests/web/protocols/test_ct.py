"""The RFC 6962 §4 HTTP API of a KMI log, read back and verified as a monitor would."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pki.enrollment import sign_csr
from pki.models import LogEntry
from pki.transparency import log as ct
from pki.transparency import merkle
from pki.transparency.structures import parse_digitally_signed, parse_x509_leaf, tree_head_input
from tests.conftest import NOW, make_csr
from web.protocols import ct as ct_views

pytestmark = pytest.mark.django_db
BASE = "/ct/kmi/ct/v1"


@pytest.fixture(autouse=True)
def _fresh_log_cache():
    # Each test makes its own log "kmi": a row the views cached for the previous one is gone.
    ct_views._logs.clear()


@pytest.fixture
def grown_log(issuing_ca, profile):
    log = ct.create_log(name="kmi", actor="test", now=NOW)
    first = ct.latest_tree_head(log)
    for _ in range(3):
        sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    ct.sign_tree_head(log=log, actor="test", now=NOW)
    return log, first


def test_a_monitor_can_verify_the_log_over_http(client, grown_log):
    _log, first = grown_log
    listing = client.get("/ct/kmi/log.json").json()
    entry = listing["operators"][0]["logs"][0]
    key_der = base64.b64decode(entry["key"])
    assert base64.b64decode(entry["log_id"]) == __import__("hashlib").sha256(key_der).digest()
    assert entry["url"] == "http://pki.example.test/ct/kmi/"
    assert entry["mmd"] == 60
    sth = client.get(f"{BASE}/get-sth").json()
    assert sth["tree_size"] == 5
    root = base64.b64decode(sth["sha256_root_hash"])
    key = serialization.load_der_public_key(key_der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(
        parse_digitally_signed(base64.b64decode(sth["tree_head_signature"])),
        tree_head_input(timestamp=sth["timestamp"], tree_size=5, root_hash=root),
        ec.ECDSA(hashes.SHA256()),
    )
    entries = client.get(f"{BASE}/get-entries", {"start": 0, "end": 99}).json()["entries"]
    assert len(entries) == 5
    leaves = [base64.b64decode(e["leaf_input"]) for e in entries]
    assert merkle.root_of([merkle.leaf_hash(li) for li in leaves]) == root
    _, _, _der = parse_x509_leaf(leaves[4])
    chain = base64.b64decode(entries[4]["extra_data"])
    assert int.from_bytes(chain[:3], "big") == len(chain) - 3  # issuing CA, then root
    leaf_hash = merkle.leaf_hash(leaves[4])
    proof = client.get(
        f"{BASE}/get-proof-by-hash", {"hash": base64.b64encode(leaf_hash).decode(), "tree_size": 5}
    ).json()
    assert proof["leaf_index"] == 4
    path = [base64.b64decode(h) for h in proof["audit_path"]]
    assert merkle.verify_inclusion(leaf=leaf_hash, index=4, size=5, path=path, root=root)
    consistency = client.get(f"{BASE}/get-sth-consistency", {"first": first.tree_size, "second": 5}).json()
    assert merkle.verify_consistency(
        first=first.tree_size,
        second=5,
        first_root=bytes(first.root_hash),
        second_root=root,
        proof=[base64.b64decode(h) for h in consistency["consistency"]],
    )
    roots = client.get(f"{BASE}/get-roots").json()["certificates"]
    assert len(roots) == 1


def test_bad_requests_get_clear_errors_and_submissions_are_refused(client, grown_log):
    assert client.get("/ct/nope/ct/v1/get-sth").status_code == 404
    assert client.get("/ct/nope/log.json").status_code == 404
    for params in ({"start": "x", "end": 1}, {"start": 4, "end": 2}, {"start": 99, "end": 100}):
        r = client.get(f"{BASE}/get-entries", params)
        assert r.status_code == 400
        assert r.json()["error"]
    assert client.get(f"{BASE}/get-proof-by-hash", {"hash": "!!", "tree_size": 5}).status_code == 400
    assert client.get(f"{BASE}/get-proof-by-hash", {"hash": "AAAA", "tree_size": 5}).status_code == 400
    missing = base64.b64encode(b"\x00" * 32).decode()
    assert client.get(f"{BASE}/get-proof-by-hash", {"hash": missing, "tree_size": 5}).status_code == 404
    assert client.get(f"{BASE}/get-sth-consistency", {"first": 3, "second": 50}).status_code == 400
    before = LogEntry.objects.count()
    r = client.post(f"{BASE}/add-chain", {"chain": []}, content_type="application/json")
    assert r.status_code == 400
    assert "only the certificates it issues" in r.json()["error"]
    assert client.get(f"{BASE}/add-chain").status_code == 405
    assert client.post(f"{BASE}/add-pre-chain", {}, content_type="application/json").status_code == 400
    assert client.post(f"{BASE}/get-sth").status_code == 405
    assert LogEntry.objects.count() == before
