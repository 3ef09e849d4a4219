"""The review's attack over the API: renewing an approved code-signing certificate as someone else."""

from __future__ import annotations

import pytest

from pki.access import revoke_grant
from pki.enrollment import approve_and_issue, enroll
from pki.models import Certificate, CertificateRequest, Profile, RequestState, RoleGrant
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture
def signing_cert(issuing_ca, requester, operator):
    """Rita's code-signing certificate, approved by Oscar."""
    result = enroll(
        ca=issuing_ca,
        profile=Profile.objects.get(name="code-signing"),
        csr=make_csr("ec-p384", subject="CN=Rita Builder,O=KMI"),
        actor="rita",
        requester=requester.user,
    )
    cert = approve_and_issue(request=result.request, actor="oscar", reviewer=operator.user)
    assert cert is not None
    return cert


def _renew(actor, cert, **body):
    return actor.client.post(f"/api/v1/certificates/{cert.pk}/renew/", body, format="json")


def test_a_new_key_with_subject_microsoft_is_refused(requester, signing_cert):
    before = Certificate.objects.count(), CertificateRequest.objects.count()
    forged = make_csr("ec-p256", subject="CN=Microsoft Corporation").decode()
    response = _renew(requester, signing_cert, csr=forged)
    assert response.status_code == 422
    assert "keeps the subject" in response.json()["detail"]
    assert (Certificate.objects.count(), CertificateRequest.objects.count()) == before


def test_renewal_waits_for_approval_and_ends_with_the_grant(requester, operator, signing_cert):
    same = make_csr("ec-p256", subject="CN=Rita Builder,O=KMI").decode()
    response = _renew(requester, signing_cert, csr=same)
    assert response.status_code == 202
    pending = CertificateRequest.objects.get(renews=signing_cert)
    assert response["Location"].endswith(f"/api/v1/requests/{pending.pk}/")
    assert response.json()["state"] == RequestState.PENDING
    assert response.json()["renews"].endswith(f"/api/v1/certificates/{signing_cert.pk}/")
    assert not Certificate.objects.filter(renewed_from=signing_cert).exists()
    for grant in RoleGrant.objects.filter(user=requester.user):
        revoke_grant(grant=grant, actor="admin")
    before = Certificate.objects.count(), CertificateRequest.objects.count()
    assert _renew(requester, signing_cert, csr=same).status_code == 403
    assert _renew(requester, signing_cert).status_code == 403
    # The operator's approval of what she asked while she held it is refused now.
    refused = operator.client.post(f"/api/v1/requests/{pending.pk}/approve/")
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_authorized"
    assert (Certificate.objects.count(), CertificateRequest.objects.count()) == before


def test_a_token_made_with_an_expiring_token_cannot_outlive_it(requester):
    short = requester.client.post("/api/v1/tokens/", {"name": "ci", "expires_in_days": 7}, format="json")
    assert short.status_code == 201
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {short.json()['token']}")
    longer = client.post("/api/v1/tokens/", {"name": "ci-2", "expires_in_days": 30}, format="json")
    assert longer.status_code == 422
    assert "outlive" in longer.json()["detail"]
    inherited = client.post("/api/v1/tokens/", {"name": "ci-3"}, format="json")
    assert inherited.status_code == 201
    assert inherited.json()["expires_at"] == short.json()["expires_at"]
