"""Schemathesis against the live OpenAPI schema: no 5xx, no response that breaks the schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from cryptography import x509
from django.contrib.auth.models import User
from django.core import signals
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pki.access import grant_role
from pki.acme.endpoints import create_endpoint
from pki.authorities import create_intermediate_ca, create_root_ca
from pki.enrollment import enroll
from pki.models import Profile, Role
from pki.tokens import create_token
from pki.x509.names import parse_subject
from tests.conftest import make_csr
from web.api import throttles
from web.wsgi import application

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def admin_token(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """An administrator's token and a small PKI, in a module-wide transaction rolled back at the end."""
    # The WSGI handler closes "obsolete" connections after each request, and a connection inside
    # a transaction looks obsolete: keep it open while the module runs.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        user = None
        try:
            root = create_root_ca(name="root", subject=parse_subject("CN=Schema Root"), actor="test")
            issuing = create_intermediate_ca(
                name="issuing",
                parent=root,
                subject=parse_subject("CN=Schema Issuing"),
                path_length=0,
                actor="test",
            )
            user = User.objects.create_user(username="schema-admin")
            grant_role(user=user, role=Role.ADMINISTRATOR, actor="test")
            tls = Profile.objects.get(name="tls-server")
            enroll(
                ca=issuing,
                profile=tls,
                csr=make_csr(sans=[x509.DNSName("www.example.test")]),
                actor="test",
                requester=user,
            )
            # The ACME operations' path examples name this endpoint, so they reach a real one.
            create_endpoint(
                name="demo", ca=issuing, profile=tls, allowed_identifiers=["*.example.test"], actor="t"
            )
            yield create_token(user=user, actor="test").text
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)
            if user is not None:
                throttles.forget(user.pk)


# The schema KMI serves, loaded through the WSGI app at collection (serving it needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@schema.parametrize()
@settings(
    # Bounded so `make test` stays fast; KMI_SCHEMATHESIS_EXAMPLES=200 for a deeper run by hand.
    max_examples=int(os.environ.get("KMI_SCHEMATHESIS_EXAMPLES", "10")),
    deadline=None,
    derandomize="KMI_SCHEMATHESIS_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_schema(case: Any, admin_token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)
