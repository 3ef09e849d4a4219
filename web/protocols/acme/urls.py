"""Routes of every ACME endpoint under ``/acme/<name>/`` (the paths pki.acme.locations builds)."""

from django.urls import path

from web.protocols.acme import views

app_name = "acme"

urlpatterns = [
    path("<slug:name>/directory", views.directory, name="directory"),
    path("<slug:name>/new-nonce", views.new_nonce_view, name="new-nonce"),
    path("<slug:name>/new-account", views.new_account, name="new-account"),
    path("<slug:name>/new-order", views.new_order, name="new-order"),
    path("<slug:name>/revoke-cert", views.revoke_cert, name="revoke-cert"),
    path("<slug:name>/key-change", views.key_change, name="key-change"),
    path("<slug:name>/renewal-info/<str:cert_id_text>", views.renewal_info, name="renewal-info"),
    path("<slug:name>/acct/<str:token>", views.account_view, name="account"),
    path("<slug:name>/acct/<str:token>/orders", views.account_orders, name="account-orders"),
    path("<slug:name>/order/<str:token>", views.order_view, name="order"),
    path("<slug:name>/order/<str:token>/finalize", views.finalize, name="finalize"),
    path("<slug:name>/authz/<str:token>", views.authorization_view, name="authz"),
    path("<slug:name>/chall/<str:token>", views.challenge_view, name="challenge"),
    path("<slug:name>/cert/<str:token>", views.certificate_view, name="certificate"),
    path(
        "<slug:name>/cert/<str:token>/<int:alternate>", views.certificate_view, name="certificate-alternate"
    ),
    # Anything else under an endpoint is a problem document too (with a nonce, like every answer).
    path("<slug:name>/<path:rest>", views.unknown_resource, name="unknown"),
]
