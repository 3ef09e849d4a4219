"""Seed the standard profiles. Values are frozen here on purpose (migrations must not drift)."""

from django.db import migrations

ANY_DNS = "dns:**"
ANY_IP = ["ip:0.0.0.0/0", "ip:::/0"]
TLS_KEYS = ["rsa", "ec-p256", "ec-p384", "ec-p521"]
ALL_KEYS = ["rsa", "ec-p256", "ec-p384", "ec-p521", "ed25519", "ed448"]

PROFILES = [
    {
        "name": "tls-server",
        "description": "TLS server (HTTPS, mTLS server side). CA/B Forum 397-day cap.",
        "validity_days": 397, "default_validity_days": 90, "key_types": TLS_KEYS,
        "key_usage": ["digital_signature", "key_encipherment"], "extended_key_usage": ["serverAuth"],
        "allowed_names": [ANY_DNS, *ANY_IP], "require_san": True,
    },
    {
        "name": "tls-client",
        "description": "TLS client authentication (mTLS, VPN users and devices).",
        "validity_days": 397, "default_validity_days": 365, "key_types": ALL_KEYS,
        "key_usage": ["digital_signature"], "extended_key_usage": ["clientAuth"],
        "allowed_names": [ANY_DNS, *ANY_IP, "email:*", "uri:*"],
    },
    {
        "name": "tls-server-client",
        "description": "Both ends of TLS (service-to-service mTLS).",
        "validity_days": 397, "default_validity_days": 90, "key_types": TLS_KEYS,
        "key_usage": ["digital_signature", "key_encipherment"],
        "extended_key_usage": ["serverAuth", "clientAuth"],
        "allowed_names": [ANY_DNS, *ANY_IP, "uri:*"], "require_san": True,
    },
    {
        "name": "code-signing",
        "description": "Code signing; every request waits for an operator's approval.",
        "validity_days": 1095, "default_validity_days": 365, "key_types": ["rsa", "ec-p256", "ec-p384"],
        "min_rsa_bits": 3072, "key_usage": ["digital_signature"], "extended_key_usage": ["codeSigning"],
        "allowed_names": [], "requires_approval": True,
    },
    {
        "name": "email-protection",
        "description": "S/MIME signing and encryption.",
        "validity_days": 825, "default_validity_days": 365, "key_types": ALL_KEYS,
        "key_usage": ["digital_signature", "key_encipherment"], "extended_key_usage": ["emailProtection"],
        "allowed_names": ["email:*"], "require_san": True,
    },
    {
        "name": "ocsp-signing",
        "description": "Delegated OCSP responder (id-kp-OCSPSigning, id-pkix-ocsp-nocheck).",
        "validity_days": 30, "default_validity_days": 7, "key_types": ALL_KEYS,
        "key_usage": ["digital_signature"], "extended_key_usage": ["OCSPSigning"],
        "allowed_names": [], "ocsp_no_check": True,
    },
    {
        "name": "sub-ca",
        "description": "Subordinate CA (created with init_ca --parent); needs approval.",
        "validity_days": 1825, "default_validity_days": 1825, "key_types": ALL_KEYS,
        "key_usage": ["digital_signature", "key_cert_sign", "crl_sign"], "extended_key_usage": [],
        "allowed_names": [], "requires_approval": True, "is_ca": True, "path_length": 0,
    },
]


def seed(apps, schema_editor):
    Profile = apps.get_model("pki", "Profile")
    for spec in PROFILES:
        Profile.objects.get_or_create(name=spec["name"], defaults=spec)


def unseed(apps, schema_editor):
    Profile = apps.get_model("pki", "Profile")
    Profile.objects.filter(name__in=[p["name"] for p in PROFILES], requests__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("pki", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
