"""URLs of the REST API, under /api/v1/ (namespace ``api``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from web.api import acme, views
from web.api.inclusion import InclusionView

app_name = "api"

router = SimpleRouter()
router.register("cas", views.CertificateAuthorityViewSet, basename="ca")
router.register("profiles", views.ProfileViewSet, basename="profile")
router.register("requests", views.CertificateRequestViewSet, basename="request")
router.register("certificates", views.CertificateViewSet, basename="certificate")
router.register("keys", views.KeyViewSet, basename="key")
router.register("key-recoveries", views.KeyRecoveryViewSet, basename="key-recovery")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("server-keys", views.ServerKeyViewSet, basename="server-key")
router.register("tokens", views.ApiTokenViewSet, basename="token")
router.register("grants", views.RoleGrantViewSet, basename="grant")
router.register("acme/endpoints", acme.AcmeEndpointViewSet, basename="acme-endpoint")
router.register(
    rf"acme/endpoints/(?P<endpoint>{acme.NAME_REGEX})/eab-keys", acme.EabKeyViewSet, basename="acme-eab-key"
)

urlpatterns = [
    path("enroll", views.EnrollView.as_view(), name="enroll"),
    path("certificates/<int:pk>/inclusion/", InclusionView.as_view(), name="certificate-inclusion"),
    *router.urls,
]
