"""URLs of the REST API, under /api/v1/ (namespace ``api``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from web.api import acme, devices
from web.api.inclusion import InclusionView
from web.api.views import (
    audit_events,
    ca_creations,
    cas,
    certificate_requests,
    certificates,
    enroll,
    grants,
    key_recoveries,
    keys,
    profiles,
    server_keys,
    tokens,
)

app_name = "api"

router = SimpleRouter()
router.register("cas", cas.CertificateAuthorityViewSet, basename="ca")
router.register("ca-creations", ca_creations.CACreationViewSet, basename="ca-creation")
router.register("profiles", profiles.ProfileViewSet, basename="profile")
router.register("requests", certificate_requests.CertificateRequestViewSet, basename="request")
router.register("certificates", certificates.CertificateViewSet, basename="certificate")
router.register("keys", keys.KeyViewSet, basename="key")
router.register("key-recoveries", key_recoveries.KeyRecoveryViewSet, basename="key-recovery")
router.register("audit-events", audit_events.AuditEventViewSet, basename="audit-event")
router.register("server-keys", server_keys.ServerKeyViewSet, basename="server-key")
router.register("tokens", tokens.ApiTokenViewSet, basename="token")
router.register("grants", grants.RoleGrantViewSet, basename="grant")
router.register("acme/endpoints", acme.AcmeEndpointViewSet, basename="acme-endpoint")
router.register(
    rf"acme/endpoints/(?P<endpoint>{acme.NAME_REGEX})/eab-keys", acme.EabKeyViewSet, basename="acme-eab-key"
)

router.register("est/labels", devices.EstLabelViewSet, basename="est-label")
router.register("scep/labels", devices.ScepLabelViewSet, basename="scep-label")

urlpatterns = [
    path("enroll", enroll.EnrollView.as_view(), name="enroll"),
    path("certificates/<int:pk>/inclusion/", InclusionView.as_view(), name="certificate-inclusion"),
    *router.urls,
]
