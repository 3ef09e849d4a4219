"""The REST API with KMI_SIGNING=worker: a web process with no KEK enrolls through a real signing worker.

One Celery worker (on ``celery`` and ``signing``, holding the KEK) runs for the whole module on a
private ``redis-server`` in this engineer's port range, so a test can stop Redis without touching
anyone else's. API calls are made by fresh web-side processes (``web.settings``, no KEK at all,
``KMI_SIGNING=worker``) through Django's test client.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from pki.models import (
    AuditEvent,
    Certificate,
    CertificateRequest,
    KeyDelivery,
    KeyState,
    Profile,
    RequestState,
    Role,
)
from tests.conftest import make_csr
from tests.support.processes import delete_prefixed_keys, web_side_api

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PORTS = (18700, 18799)
SAN_WWW = [x509.DNSName("www.example.test")]


@pytest.fixture
def rita(make_actor, issuing_ca):
    """A requester for ``issuing`` under tls-server and code-signing."""
    return make_actor(
        "rita",
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="tls-server")),
        (Role.REQUESTER, issuing_ca, Profile.objects.get(name="code-signing")),
    )


def _body(profile: str = "tls-server", csr: bytes | None = None) -> str:
    csr = csr or make_csr(sans=SAN_WWW)
    return json.dumps({"csr": csr.decode(), "ca": "issuing", "profile": profile})


def test_web_process_without_a_kek_enrolls_approves_and_renews_through_the_signing_worker(
    signing_set, rita, make_actor, issuing_ca
):
    env = signing_set.web_env()
    enrolled = web_side_api(env, rita.token, "POST", "/api/v1/enroll", _body())
    assert enrolled["web_has_kek"] is False
    assert enrolled["status"] == 201, enrolled["body"]
    assert enrolled["headers"]["Content-Type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(enrolled["body"].encode())
    cert = Certificate.objects.get(pk=int(enrolled["headers"]["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert int(cert.serial, 16) == chain[0].serial_number
    assert cert.owner_id == rita.user.pk
    assert cert.request.state == RequestState.ISSUED
    actions = sorted(AuditEvent.objects.filter(actor__startswith="rita").values_list("action", flat=True))
    assert actions == ["certificate.issued", "request.submitted"]

    # An approval-profile request waits; the operator's approval is issued by the worker.
    oscar = make_actor("oscar", (Role.CA_OPERATOR, issuing_ca, None))
    pending = web_side_api(
        env,
        rita.token,
        "POST",
        "/api/v1/enroll",
        _body("code-signing", make_csr("ec-p384", subject="CN=B,O=KMI")),
    )
    assert pending["status"] == 202
    approved = web_side_api(env, oscar.token, "POST", pending["headers"]["Location"] + "approve/")
    assert approved["status"] == 200, approved["body"]
    assert json.loads(approved["body"])["state"] == "issued"

    renewed = web_side_api(env, rita.token, "POST", f"/api/v1/certificates/{cert.pk}/renew/", "{}")
    assert renewed["status"] == 201, renewed["body"]
    assert Certificate.objects.get(pk=json.loads(renewed["body"])["id"]).renewed_from_id == cert.pk


def test_server_generated_key_is_made_on_the_worker_and_delivered_once_to_a_web_process_without_a_kek(
    signing_set, rita
):
    env = signing_set.web_env()
    body = json.dumps({"ca": "issuing", "profile": "tls-server", "sans": ["dns:www.example.test"]})
    created = web_side_api(env, rita.token, "POST", "/api/v1/server-keys/", body)
    assert created["status"] == 201, created["body"]
    url = json.loads(created["body"])["pkcs12_url"]
    secret = json.loads(created["body"])["download_secret"]
    password = json.dumps({"password": "correct horse battery", "download_secret": secret})
    first = web_side_api(env, rita.token, "POST", url, password)
    assert first["web_has_kek"] is False
    assert first["status"] == 200, first["body"]
    bundle = pkcs12.load_pkcs12(base64.b64decode(first["body_b64"]), b"correct horse battery")
    assert bundle.key is not None
    assert bundle.cert is not None
    assert bundle.key.public_key() == bundle.cert.certificate.public_key()
    delivery = KeyDelivery.objects.select_related("key").get()
    assert delivery.key.state == KeyState.DESTROYED  # no escrow: KMI's copy is gone
    second = web_side_api(env, rita.token, "POST", url, password)
    assert second["status"] == 410


def test_enroll_with_no_signing_worker_answering_is_503_and_keeps_the_request(signing_set, rita):
    lonely = f"kmi-test-{uuid.uuid4().hex[:10]}:"  # a broker namespace no worker listens on
    env = signing_set.web_env(KMI_SIGNING_TIMEOUT="1", KMI_REDIS_KEY_PREFIX=lonely)
    try:
        response = web_side_api(env, rita.token, "POST", "/api/v1/enroll", _body())
    finally:
        delete_prefixed_keys(signing_set.redis_url, lonely)
    assert response["status"] == 503
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert response["headers"]["Retry-After"] == "5"
    problem = json.loads(response["body"])
    assert problem["code"] == "signing_unavailable"
    assert "no signing worker answered within 1 s" in problem["detail"]
    request = CertificateRequest.objects.get()
    assert request.state == RequestState.APPROVED
    assert problem["request"].endswith(f"/api/v1/requests/{request.pk}/")
    assert not Certificate.objects.filter(request=request).exists()


def test_enroll_with_redis_stopped_is_503_and_the_same_post_issues_the_stored_request_later(
    signing_set, rita
):
    body = _body(csr=make_csr("ec-p256-b", sans=SAN_WWW))
    signing_set.redis.stop()
    try:
        # The throttle cannot count without Redis either: it lets the call through (and logs it).
        failed = web_side_api(signing_set.web_env(), rita.token, "POST", "/api/v1/enroll", body)
    finally:
        signing_set.restart_redis()
    assert failed["status"] == 503, failed["body"]
    assert failed["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(failed["body"])["code"] == "signing_unavailable"
    stored = CertificateRequest.objects.get()
    assert stored.state == RequestState.APPROVED  # acknowledged and kept, not half-issued

    retried = web_side_api(signing_set.web_env(), rita.token, "POST", "/api/v1/enroll", body)
    assert retried["status"] == 201, retried["body"]
    assert CertificateRequest.objects.get().pk == stored.pk  # the same request, not a second one
    assert Certificate.objects.filter(request=stored).count() == 1


def test_a_scep_label_made_over_the_api_gets_its_ra_key_and_certificate_on_the_signer(
    signing_set, make_actor, issuing_ca
):
    """The web process holds no KEK: the label's RA key is generated and certified by the signer
    (a ``create_scep_label`` job that carries the static challenge's hash, never the password)."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from pki.models import ScepLabel, SigningJob

    env = signing_set.web_env()
    ada = make_actor("ada", (Role.ADMINISTRATOR, None, None))
    secret = "a static secret 42"
    body = json.dumps({"name": "fleet", "ca": "issuing", "profile": "tls-client", "challenge": secret})
    made = web_side_api(env, ada.token, "POST", "/api/v1/scep/labels/", body)
    assert made["status"] == 201, made["body"]
    assert made["web_has_kek"] is False
    label = ScepLabel.objects.select_related("ra_key", "ra_certificate").get(name="fleet")
    assert label.ra_certificate.key_id == label.ra_key.pk
    assert PBKDF2PasswordHasher().verify(secret, label.static_challenge)  # web.settings' hasher
    job = SigningJob.objects.get(use_case="create_scep_label")
    assert job.user_id == ada.user.pk
    assert secret not in json.dumps(job.params)
    assert AuditEvent.objects.filter(action="scep.label_created", actor__startswith="ada").count() == 1
    # The same name again: the signer's refusal comes back as the API's 409; a requester: 403.
    assert web_side_api(env, ada.token, "POST", "/api/v1/scep/labels/", body)["status"] == 409
    rita = make_actor("rita", (Role.REQUESTER, issuing_ca, Profile.objects.get(name="tls-client")))
    other = body.replace("fleet", "fleet-2")
    assert web_side_api(env, rita.token, "POST", "/api/v1/scep/labels/", other)["status"] == 403
    assert ScepLabel.objects.count() == 1


def test_keys_are_destroyed_where_their_material_lives_a_ca_key_after_two_administrators(
    signing_set, make_actor, root_ca
):
    """POST keys/<id>/state/ destroy from a web process without the KEK: the signer erases the
    material (a ``destroy_key`` job); a CA key's job names the destruction two administrators
    approved (tests/pki/test_signing_channel.py: the signer refuses one nobody approved)."""
    from pki.authorities import create_intermediate_ca, set_ca_state
    from pki.keystore import generate_key
    from pki.models import CAState, KeyDestruction, SealedKey, SigningJob, TwoPersonState
    from pki.models.key import KeyPurpose
    from pki.x509.names import parse_subject

    env = signing_set.web_env()
    ada = make_actor("ada", (Role.ADMINISTRATOR, None, None))
    bob = make_actor("bob", (Role.ADMINISTRATOR, None, None))
    destroy = json.dumps({"action": "destroy", "reason": "retired"})
    plain = generate_key(key_type="ec-p256", purpose=KeyPurpose.OCSP, actor="t")
    done = web_side_api(env, ada.token, "POST", f"/api/v1/keys/{plain.pk}/state/", destroy)
    assert done["status"] == 200, done["body"]
    assert done["web_has_kek"] is False
    plain.refresh_from_db()
    assert plain.state == KeyState.DESTROYED
    assert not SealedKey.objects.filter(key_id=plain.pk).exists()
    assert SigningJob.objects.filter(use_case="destroy_key", params__key_id=str(plain.pk)).exists()

    ca = create_intermediate_ca(name="old", subject=parse_subject("CN=Old"), parent=root_ca, actor="t")
    set_ca_state(ca=ca, state=CAState.DISABLED, actor="t")
    url = f"/api/v1/keys/{ca.key_id}/state/"
    asked = web_side_api(env, ada.token, "POST", url, destroy)
    assert asked["status"] == 202, asked["body"]
    approved = web_side_api(env, bob.token, "POST", url, destroy)
    assert approved["status"] == 200, approved["body"]
    row = KeyDestruction.objects.get(key_id=ca.key_id)
    assert row.state == TwoPersonState.DONE
    ca.key.refresh_from_db()
    assert ca.key.state == KeyState.DESTROYED
    assert SigningJob.objects.filter(use_case="destroy_key", params__destruction_id=row.pk).exists()
