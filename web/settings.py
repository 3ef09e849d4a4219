"""Django settings for KMI, read from the environment (see README: Configuration)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from web.env import env_bool, env_int, env_secret, env_str

# Lets typed generics such as admin.ModelAdmin[Model] work at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("KMI_DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("KMI_DEBUG", default=False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or env_secret("KMI_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and env_bool("KMI_REQUIRE_SECRET_KEY", default=False):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set")
    # Development default only; production sets DJANGO_SECRET_KEY (docker/compose.yaml does).
    SECRET_KEY = "kmi-insecure-development-key-change-me-0123456789abcdef"  # noqa: S105

ALLOWED_HOSTS = [h.strip() for h in env_str("KMI_ALLOWED_HOSTS", "*").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "pki",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "web.urls"
WSGI_APPLICATION = "web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
_default_db = f"sqlite:///{DATA_DIR / 'kmi.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL", _default_db)
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("KMI_DB_CONN_MAX_AGE", 60))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so concurrent writers (web, worker)
    # wait for each other instead of failing with "database is locked" half way.
    _db["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    _db["CONN_MAX_AGE"] = 0
elif _db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be postgres://… or sqlite:///…")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, cache, celery --------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("KMI_CACHE_PREFIX", "kmi"),
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Embedded broker: kombu's filesystem transport needs no server, so `make run` works alone.
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'results'}"

CELERY_TASK_ALWAYS_EAGER = env_bool("KMI_CELERY_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

# --- auth, i18n, static ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("KMI_LOG_LEVEL", "INFO")},
}

# --- KMI -----------------------------------------------------------------------------------
# Everything PKI-specific is validated once into pki.conf.PKISettings (a frozen object).
KMI = {
    "BASE_URL": env_str("KMI_BASE_URL", "http://127.0.0.1:8000"),
    "KEK": env_str("KMI_KEK", ""),  # id:base64 entries; KMI_KEK_FILE names a file of them
    "KEK_FILE": env_str("KMI_KEK_FILE", ""),
    "KEY_BACKENDS": {
        "encrypted": {"BACKEND": "pki.keys.encrypted.EncryptedKeyBackend", "OPTIONS": {}},
    },
    "DEFAULT_KEY_BACKEND": env_str("KMI_DEFAULT_KEY_BACKEND", "encrypted"),
    "MAX_CSR_BYTES": env_int("KMI_MAX_CSR_BYTES", 16384, minimum=256),
    "BACKDATE_SECONDS": env_int("KMI_BACKDATE_SECONDS", 60, minimum=0),
    "AUDIT_LANES": env_int("KMI_AUDIT_LANES", 8, minimum=1),
    "KEY_CACHE_SECONDS": env_int("KMI_KEY_CACHE_SECONDS", 300, minimum=0),
}

# --- revocation and CRLs (README "Revocation and CRLs") -----------------------------------
KMI.update(
    {
        "CRL_NEXT_UPDATE_SECONDS": env_int("KMI_CRL_NEXT_UPDATE_SECONDS", 86400, minimum=60),
        "CRL_KEEP_EXPIRED_DAYS": env_int("KMI_CRL_KEEP_EXPIRED_DAYS", 0, minimum=0),
        "CRL_REVOCATION_DELAY": env_int("KMI_CRL_REVOCATION_DELAY", 60, minimum=2),
        "CRL_HISTORY": env_int("KMI_CRL_HISTORY", 3, minimum=1),
        "CRL_CACHE_SECONDS": env_int("KMI_CRL_CACHE_SECONDS", 300, minimum=0),
        "CRL_DIR": env_str("KMI_CRL_DIR", ""),
    }
)

# --- ACME (RFC 8555) -----------------------------------------------------------------------
# Read by pki.acme.conf. Validation of challenges runs on Celery unless VALIDATE_INLINE (or
# CELERY_TASK_ALWAYS_EAGER) asks for it in the web process (useful with no worker running).
KMI_ACME = {
    "HTTP01_PORT": env_int("KMI_ACME_HTTP01_PORT", 80, minimum=1),
    "TLS_ALPN01_PORT": env_int("KMI_ACME_TLS_ALPN01_PORT", 443, minimum=1),
    # Comma-separated ip or ip:port of the resolvers for dns-01 and for A/AAAA lookups of
    # http-01 and tls-alpn-01; empty: the system's resolver.
    "DNS_RESOLVERS": env_str("KMI_ACME_DNS_RESOLVERS", ""),
    "VALIDATION_TIMEOUT": env_int("KMI_ACME_VALIDATION_TIMEOUT", 10, minimum=1),
    "VALIDATE_INLINE": env_bool("KMI_ACME_VALIDATE_INLINE", default=False),
    "NONCE_TTL": env_int("KMI_ACME_NONCE_TTL", 3600, minimum=30),
    "NONCE_PREFIX": f"{env_str('KMI_CACHE_PREFIX', 'kmi')}:acme:nonce:",
    "ORDER_LIFETIME": env_int("KMI_ACME_ORDER_LIFETIME", 7 * 86400, minimum=60),
    "MAX_BODY_BYTES": env_int("KMI_ACME_MAX_BODY_BYTES", 65536, minimum=4096),
    "RETRY_AFTER": env_int("KMI_ACME_RETRY_AFTER", 1, minimum=1),
    # An account's valid authorization (until its order's expiry) counts again for a new order.
    "REUSE_AUTHORIZATIONS": env_bool("KMI_ACME_REUSE_AUTHORIZATIONS", default=True),
}
