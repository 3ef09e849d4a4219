"""URL map of the KMI site."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("acme/", include("web.protocols.acme.urls")),
]
