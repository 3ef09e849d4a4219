"""URL map of the KMI site."""

from django.contrib import admin
from django.urls import include, path, re_path

from web.protocols import repository

urlpatterns = [
    path("admin/", admin.site.urls),
    # HTTP repository (pki/locations.py writes these URLs into certificates).
    re_path(r"^crl/(?P<stem>[a-z0-9][a-z0-9-]{0,68})\.crl(?P<as_pem>\.pem)?$", repository.crl),
    re_path(r"^ca/(?P<name>[a-z0-9][a-z0-9-]{0,62})\.cer$", repository.ca_certificate),
    re_path(r"^ca/(?P<stem>[a-z0-9][a-z0-9-]{0,68})\.pem$", repository.ca_pem),
    path("acme/", include("web.protocols.acme.urls")),
]
