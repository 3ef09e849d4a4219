"""URL map of the KMI site."""

from django.contrib import admin
from django.urls import path

from web.health import healthz
from web.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
]
