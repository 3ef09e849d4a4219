"""URLs of the operator console (``/console/…``): every page has a permalink."""

from django.urls import path

from web.console import auth
from web.console.views import (
    access,
    acme,
    alerts,
    audit,
    cas,
    certificates,
    dashboard,
    devices,
    enroll,
    keys,
    profiles,
    requests,
)

app_name = "console"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("alerts/<int:pk>/acknowledge/", alerts.acknowledge, name="alert_acknowledge"),
    path("alerts/<int:pk>/resolve/", alerts.resolve, name="alert_resolve"),
    path("login/", auth.login_view, name="login"),
    path("login/totp/", auth.totp_view, name="totp"),
    path("login/totp/setup/", auth.totp_setup_view, name="totp_setup"),
    path("logout/", auth.logout_view, name="logout"),
    path("requests/", requests.request_list, name="requests"),
    path("requests/approve/", requests.bulk_approve, name="bulk_approve"),
    path("requests/<int:pk>/", requests.request_detail, name="request"),
    path("requests/<int:pk>/approve/", requests.approve, name="approve"),
    path("requests/<int:pk>/reject/", requests.reject, name="reject"),
    path("certificates/", certificates.certificate_list, name="certificates"),
    path("certificates/<int:pk>/", certificates.certificate_detail, name="certificate"),
    path("certificates/<int:pk>/revoke/", certificates.revoke, name="revoke"),
    path("certificates/<int:pk>/unhold/", certificates.unhold, name="unhold"),
    path("certificates/<int:pk>/renew/", certificates.renew, name="renew"),
    path("enroll/", enroll.enroll_csr, name="enroll"),
    path("enroll/server-key/", enroll.server_key, name="server_key"),
    path("server-keys/<uuid:pk>/", enroll.server_key_download, name="server_key_download"),
    path("cas/", cas.ca_list, name="cas"),
    path("cas/new/", cas.ca_create, name="ca_new"),
    path("cas/<slug:name>/", cas.ca_detail, name="ca"),
    path("cas/<slug:name>/state/", cas.ca_state, name="ca_state"),
    path("profiles/", profiles.profile_list, name="profiles"),
    path("profiles/new/", profiles.profile_create, name="profile_new"),
    path("profiles/<slug:name>/", profiles.profile_detail, name="profile"),
    path("profiles/<slug:name>/edit/", profiles.profile_edit, name="profile_edit"),
    path("keys/", keys.key_list, name="keys"),
    path("keys/<uuid:pk>/", keys.key_detail, name="key"),
    path("keys/<uuid:pk>/deactivate/", keys.key_deactivate, name="key_deactivate"),
    path("keys/<uuid:pk>/destroy/", keys.key_destroy, name="key_destroy"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/verify/", audit.audit_verify, name="audit_verify"),
    path("access/", access.access, name="access"),
    path("access/users/<int:pk>/", access.user_detail, name="user"),
    path("tokens/", access.my_tokens, name="tokens"),
    path("acme/", acme.endpoint_list, name="acme"),
    path("acme/<slug:name>/", acme.endpoint_detail, name="acme_endpoint"),
    path("devices/", devices.device_list, name="devices"),
]
