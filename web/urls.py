"""URL map of the KMI site."""

from django.contrib import admin
from django.urls import path

from web.protocols.ocsp import ocsp_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # OCSP (RFC 6960 Appendix A): POST /ocsp/<ca>, GET /ocsp/<ca>/<base64 request>.
    path("ocsp/<path:path>", ocsp_view, name="ocsp"),
]
