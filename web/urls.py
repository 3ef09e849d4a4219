"""URL map of the KMI site."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from web.health import healthz
from web.metrics import metrics_view
from web.protocols import repository
from web.protocols.est import est_view
from web.protocols.ocsp import ocsp_view
from web.protocols.scep import scep_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # The operator console (web/console): server-rendered pages over the same use cases.
    path("console/", include("web.console.urls")),
    # REST API (web/api): schema, docs and the versioned endpoints.
    path("api/v1/", include("web.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # HTTP repository (pki/locations.py writes these URLs into certificates).
    # Names are a CA generation's repository name (pki.locations): "issuing", "issuing.g2".
    re_path(
        r"^crl/(?P<stem>[a-z0-9][a-z0-9-]{0,68}(?:\.g[1-9][0-9]{0,5}(?:-[0-9]{1,4})?)?)\.crl(?P<as_pem>\.pem)?$",
        repository.crl,
    ),
    re_path(r"^ca/(?P<name>[a-z0-9][a-z0-9-]{0,62}(?:\.g[1-9][0-9]{0,5})?)\.cer$", repository.ca_certificate),
    re_path(
        r"^ca/(?P<stem>[a-z0-9][a-z0-9-]{0,68}(?:\.g[1-9][0-9]{0,5}(?:-chain)?)?)\.pem$", repository.ca_pem
    ),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    # OCSP (RFC 6960 Appendix A): POST /ocsp/<ca>, GET /ocsp/<ca>/<base64 request>.
    path("ocsp/<path:path>", ocsp_view, name="ocsp"),
    path("acme/", include("web.protocols.acme.urls")),
    # Device enrollment: EST (RFC 7030 §3.2.2) and SCEP (RFC 8894 §4.1).
    path(".well-known/est/<slug:operation>", est_view, name="est"),
    path(".well-known/est/<slug:label>/<slug:operation>", est_view, name="est-label"),
    path("scep/<slug:label>", scep_view, name="scep"),
    path("scep/<slug:label>/pkiclient.exe", scep_view, name="scep-cisco"),
    # Transparency logs (RFC 6962 §4 under /ct/<log-name>/ct/v1/; log.json for monitors).
    path("ct/", include("web.protocols.ct")),
]

# Unmatched /api/ URLs answer with RFC 7807 problem documents too.
handler400 = "web.api.errors.handler400"
handler403 = "web.api.errors.handler403"
handler404 = "web.api.errors.handler404"
handler500 = "web.api.errors.handler500"
