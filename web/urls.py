"""URL map of the KMI site."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    # REST API (web/api): schema, docs and the versioned endpoints.
    path("api/v1/", include("web.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# Unmatched /api/ URLs answer with RFC 7807 problem documents too.
handler404 = "web.api.errors.handler404"
handler500 = "web.api.errors.handler500"
