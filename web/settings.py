"""Django settings for KMI, read from the environment through pki.settings_registry.

Every variable is declared (type, default, meaning) in pki/settings_registry.py and parsed here
once, at start-up: a bad value stops the process with a message naming the variable. The
manual's configuration reference (docs/reference/configuration.md) is generated from it.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from pki.settings_registry import load_environment

# Lets typed generics such as admin.ModelAdmin[Model] work at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
# Lower case: not a Django setting, so neither diffsettings nor the debug page shows these values.
env = load_environment()
# In a source tree var/ sits beside manage.py; an installed package (the `kmi` command) keeps its
# data under the working directory's var/, never inside site-packages.
_SOURCE_TREE = (BASE_DIR / "manage.py").exists()
DATA_DIR = Path(env["KMI_DATA_DIR"] or (BASE_DIR / "var" if _SOURCE_TREE else Path.cwd() / "var"))
# templates/ and static/ sit at the top of a source tree; the wheel carries them in web/assets/.
ASSETS_DIR = BASE_DIR if _SOURCE_TREE else Path(__file__).resolve().parent / "assets"

DEBUG = env["KMI_DEBUG"]
SECRET_KEY = env["DJANGO_SECRET_KEY"] or env["KMI_SECRET_KEY"]
if not SECRET_KEY:
    if not DEBUG and env["KMI_REQUIRE_SECRET_KEY"]:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set")
    # Development default only; production sets DJANGO_SECRET_KEY (docker/compose.yaml does).
    SECRET_KEY = "kmi-insecure-development-key-change-me-0123456789abcdef"  # noqa: S105

ALLOWED_HOSTS = list(env["KMI_ALLOWED_HOSTS"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
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
        "DIRS": [ASSETS_DIR / "templates"],
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
DATABASE_URL = env["DATABASE_URL"] or _default_db
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env["KMI_DB_CONN_MAX_AGE"])
except ValueError:
    # Never the URL itself in the message: it may carry the database password.
    raise ImproperlyConfigured("DATABASE_URL is not a database URL dj-database-url can read") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so concurrent writers (web, worker)
    # wait for each other instead of failing with "database is locked" half way.
    _db["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    _db["CONN_MAX_AGE"] = 0
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's cursors bind parameters on the client and never prepare; the hot statements of
    # issuance and the API (pki.recording.execute_prepared) ask psycopg for a server-side
    # prepared statement, which psycopg refuses outright when prepare_threshold is None (Django's
    # default). A high threshold enables those explicit requests and nothing else.
    _db.setdefault("OPTIONS", {})["prepare_threshold"] = 1_000_000
    # A PostgreSQL that does not answer costs a request this long, then a 503 (not a hung worker).
    _db["OPTIONS"]["connect_timeout"] = env["KMI_DB_CONNECT_TIMEOUT"]
else:
    raise ImproperlyConfigured("DATABASE_URL must be postgres://… or sqlite:///…")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, cache, celery --------------------------------------------------------------------
REDIS_URL = env["REDIS_URL"]
# Connect and socket timeout of every Redis client (cache and throttles, broker, results, ACME
# nonces): a Redis that accepts connections and never answers costs a call this long, not forever.
KMI_REDIS_TIMEOUT = env["KMI_REDIS_TIMEOUT"]

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env["KMI_CACHE_PREFIX"],
            "OPTIONS": {"socket_connect_timeout": KMI_REDIS_TIMEOUT, "socket_timeout": KMI_REDIS_TIMEOUT},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # A message a dead worker held is redelivered after this many seconds (jobs are idempotent).
        "visibility_timeout": env["KMI_BROKER_VISIBILITY_TIMEOUT"],
        "socket_connect_timeout": KMI_REDIS_TIMEOUT,
        "socket_timeout": KMI_REDIS_TIMEOUT,
    }
    # The result backend's own client (Celery's redis_socket_* settings).
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = KMI_REDIS_TIMEOUT
    CELERY_REDIS_SOCKET_TIMEOUT = KMI_REDIS_TIMEOUT
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS: dict[str, object] = {
        # Celery's default retries a lost result store for ~20 s; a caller waiting on a signing
        # worker should hear "unavailable" in a few seconds instead.
        "retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 1, "interval_max": 1},
    }
    if env["KMI_REDIS_KEY_PREFIX"]:
        # Several KMI sets (or test runs) can share one Redis database without seeing each other.
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env["KMI_REDIS_KEY_PREFIX"]
        CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS["global_keyprefix"] = env["KMI_REDIS_KEY_PREFIX"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Embedded broker: kombu's filesystem transport needs no server, so `make run` works alone.
    _broker_dir = DATA_DIR / "broker"
    # A host name (ignored by the filesystem transport) keeps kombu from warning "No hostname was
    # supplied" on every connection, i.e. in every command that sends a task.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # Broadcast (control) messages; kombu's default is ./control under the working directory.
        "control_folder": str(_broker_dir / "control"),
    }
    CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'results'}"
    # Both kombu's filesystem transport and Celery's file backend refuse folders that do not
    # exist; every process (web, worker, beat, a command sending a task) may be the first.
    for _folder in (
        _broker_dir / "queue",
        _broker_dir / "processed",
        _broker_dir / "control",
        DATA_DIR / "results",
    ):
        _folder.mkdir(parents=True, exist_ok=True)

CELERY_TASK_ALWAYS_EAGER = env["KMI_CELERY_EAGER"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 86400
# Every task that signs with a CA or responder key goes to the `signing` queue, which only the
# processes holding the KEK consume (see pki/signing.py): the signing seam and lifecycle
# renewals (pki.signing.*), CRL publication (pki.publish_*) and OCSP pre-signing (pki.ocsp_*).
CELERY_TASK_ROUTES = {
    "pki.signing.*": {"queue": "signing"},
    "pki.publish_*": {"queue": "signing"},
    "pki.ocsp_*": {"queue": "signing"},
    # Destruction reaches the key material itself (an HSM object, or sealed rows) where it lives.
    "pki.lifecycle.destroy_keys_past_retention": {"queue": "signing"},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

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
STATICFILES_DIRS = [ASSETS_DIR / "static"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env["KMI_LOG_LEVEL"].upper()},
}

# --- KMI -----------------------------------------------------------------------------------
# Everything PKI-specific is validated once into pki.conf.PKISettings (a frozen object).
KMI = {
    "BASE_URL": env["KMI_BASE_URL"],
    "KEK": env["KMI_KEK"],  # id:base64 entries; KMI_KEK_FILE names a file of them
    "KEK_FILE": env["KMI_KEK_FILE"],
    "KEY_BACKENDS": {
        "encrypted": {"BACKEND": "pki.keys.encrypted.EncryptedKeyBackend", "OPTIONS": {}},
    },
    "DEFAULT_KEY_BACKEND": env["KMI_DEFAULT_KEY_BACKEND"],  # or pkcs11 (below)
    "MAX_CSR_BYTES": env["KMI_MAX_CSR_BYTES"],
    "BACKDATE_SECONDS": env["KMI_BACKDATE_SECONDS"],
    "AUDIT_LANES": env["KMI_AUDIT_LANES"],
    "KEY_CACHE_SECONDS": env["KMI_KEY_CACHE_SECONDS"],
    "ALLOWED_DOMAINS": env["KMI_ALLOWED_DOMAINS"],  # what the seeded profiles certify
}
# Signed audit checkpoints (pki.audit_checkpoints): exported to this file as they are made.
KMI_AUDIT_CHECKPOINT_PATH = env["KMI_AUDIT_CHECKPOINT_PATH"] or str(DATA_DIR / "audit-checkpoints.jsonl")
KMI_AUDIT_CHECKPOINT_SECONDS = env["KMI_AUDIT_CHECKPOINT_SECONDS"]
# Separation of duties for CA creation (pki.ca_creation): approvals by other administrators.
KMI_CA_CREATION_APPROVALS = env["KMI_CA_CREATION_APPROVALS"]
KMI_AUDIT_CHECKPOINT_WEBHOOK_URL = env["KMI_AUDIT_CHECKPOINT_WEBHOOK_URL"]
# An HSM through PKCS#11 (pki.keys.pkcs11; README "Keys in an HSM"), when a module is named:
# `init_ca --backend pkcs11`, or KMI_DEFAULT_KEY_BACKEND=pkcs11 for every new CA key.
if env["KMI_PKCS11_MODULE"]:
    KMI["KEY_BACKENDS"]["pkcs11"] = {
        "BACKEND": "pki.keys.pkcs11.Pkcs11KeyBackend",
        "OPTIONS": {
            "module": env["KMI_PKCS11_MODULE"],
            "token_label": env["KMI_PKCS11_TOKEN"],
            "pin": env["KMI_PKCS11_PIN"],
        },
    }

# --- revocation and CRLs (README "Revocation and CRLs") -----------------------------------
KMI.update(
    {
        "CRL_NEXT_UPDATE_SECONDS": env["KMI_CRL_NEXT_UPDATE_SECONDS"],
        "CRL_KEEP_EXPIRED_DAYS": env["KMI_CRL_KEEP_EXPIRED_DAYS"],
        "CRL_REVOCATION_DELAY": env["KMI_CRL_REVOCATION_DELAY"],
        "CRL_HISTORY": env["KMI_CRL_HISTORY"],
        "CRL_CACHE_SECONDS": env["KMI_CRL_CACHE_SECONDS"],
        "CRL_DIR": env["KMI_CRL_DIR"],
    }
)
# --- lifecycle: scheduled jobs, notifications, signing placement -----------------------------
# Validated once into pki.conf.LifecycleSettings (README: Production deployment).
KMI_LIFECYCLE = {
    # KMI_SIGNING=inprocess signs where the use case runs; KMI_SIGNING=worker signs only on the
    # Celery `signing` queue, so web processes need no KEK at all.
    "SIGNING": env["KMI_SIGNING"],
    "SIGNING_TIMEOUT": env["KMI_SIGNING_TIMEOUT"],
    "SIGNING_SECRET": env["KMI_SIGNING_SECRET"],  # MAC of signing jobs (pki.signing)
    "EXPIRY_THRESHOLDS": env["KMI_EXPIRY_THRESHOLDS"],
    "CA_EXPIRY_THRESHOLDS": env["KMI_CA_EXPIRY_THRESHOLDS"],
    "ALERT_EMAILS": env["KMI_ALERT_EMAILS"],
    "ALERT_WEBHOOK_URL": env["KMI_ALERT_WEBHOOK_URL"],
    "WEBHOOK_SECRET": env["KMI_WEBHOOK_SECRET"],
    "WEBHOOK_TIMEOUT": env["KMI_WEBHOOK_TIMEOUT"],
    "NOTIFY_MAX_ATTEMPTS": env["KMI_NOTIFY_MAX_ATTEMPTS"],
    "NOTIFY_RETRY_SECONDS": env["KMI_NOTIFY_RETRY_SECONDS"],
    "NOTIFY_CLAIM_LEASE_SECONDS": env["KMI_NOTIFY_CLAIM_LEASE_SECONDS"],
    "AUTO_RENEW_DAYS": env["KMI_AUTO_RENEW_DAYS"],
    "AUTO_RENEW_NEW_KEY": env["KMI_AUTO_RENEW_NEW_KEY"],
    "KEY_RETENTION_DAYS": env["KMI_KEY_RETENTION_DAYS"],
    "SCAN_SECONDS": env["KMI_LIFECYCLE_SCAN_SECONDS"],
    "SERVICE_CERT_NAMES": env["KMI_SERVICE_CERT_NAMES"],
    "SERVICE_CERT_DIR": env["KMI_SERVICE_CERT_DIR"],
    "SERVICE_CA": env["KMI_SERVICE_CA"],
    "SERVICE_PROFILE": env["KMI_SERVICE_PROFILE"],
    "SERVICE_RENEW_DAYS": env["KMI_SERVICE_RENEW_DAYS"],
    "METRICS_TOKEN": env["KMI_METRICS_TOKEN"],
    # The console dashboard's per-CA certificate summary is recomputed by a worker this often.
    "SUMMARY_SECONDS": env["KMI_CONSOLE_SUMMARY_SECONDS"],
    "RECONCILE_AFTER_SECONDS": env["KMI_RECONCILE_AFTER_SECONDS"],
    "APPROVED_MAX_AGE_SECONDS": env["KMI_APPROVED_MAX_AGE_SECONDS"],
}
# The threat monitor's thresholds (pki.transparency.monitor.MonitorPolicy).
KMI_MONITOR = {
    "SPIKE_FACTOR": env["KMI_MONITOR_SPIKE_FACTOR"],
    "SPIKE_FLOOR": env["KMI_MONITOR_SPIKE_FLOOR"],
    "BURST": env["KMI_MONITOR_BURST"],
    "CA_EXPIRY_DAYS": env["KMI_MONITOR_CA_EXPIRY_DAYS"],
}
if env["KMI_SIGNING"] == "worker" and len(env["KMI_SIGNING_SECRET"]) < 32:
    # The broker carries work, never authority: web and signers MAC every job (pki.signing_channel).
    raise ImproperlyConfigured(
        "KMI_SIGNING=worker needs KMI_SIGNING_SECRET (or _FILE) of at least 32 characters"
    )
if env["KMI_BEHIND_TLS_PROXY"]:
    # docker/compose.yaml: nginx terminates TLS and says so in X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = list(env["KMI_CSRF_TRUSTED_ORIGINS"])
# Counts responses of the public endpoints for /metrics (web/metrics.py); first, so it sees all.
MIDDLEWARE.insert(0, "web.metrics.ResponseMetricsMiddleware")
EMAIL_BACKEND = env["KMI_EMAIL_BACKEND"]
EMAIL_HOST = env["KMI_EMAIL_HOST"]
EMAIL_PORT = env["KMI_EMAIL_PORT"]
EMAIL_HOST_USER = env["KMI_EMAIL_USER"]
EMAIL_HOST_PASSWORD = env["KMI_EMAIL_PASSWORD"]
EMAIL_USE_TLS = env["KMI_EMAIL_STARTTLS"]
EMAIL_TIMEOUT = env["KMI_EMAIL_TIMEOUT"]
EMAIL_FILE_PATH = env["KMI_EMAIL_FILE_PATH"] or str(DATA_DIR / "mail")
DEFAULT_FROM_EMAIL = env["KMI_EMAIL_FROM"]
# --- OCSP responder (pki.conf.OCSPSettings; README: OCSP) --------------------------------------
KMI_OCSP = {
    "REDIS_PREFIX": env["KMI_OCSP_REDIS_PREFIX"],
    "RESPONSE_VALIDITY_SECONDS": env["KMI_OCSP_RESPONSE_VALIDITY_SECONDS"],
    "RESPONDER_VALIDITY_DAYS": env["KMI_OCSP_RESPONDER_VALIDITY_DAYS"],
    "RESPONDER_RENEW_FRACTION": env["KMI_OCSP_RESPONDER_RENEW_FRACTION"],
    "RESPONDER_KEY_TYPE": env["KMI_OCSP_RESPONDER_KEY_TYPE"],
    "MAX_REQUEST_BYTES": env["KMI_OCSP_MAX_REQUEST_BYTES"],
    # Per-process micro-cache in front of Redis (seconds; 0 = one Redis GET per request).
    "LOCAL_CACHE_SECONDS": env["KMI_OCSP_LOCAL_CACHE_SECONDS"],
    # New certificates are pre-signed by one task per CA per this many seconds (0 = one each).
    "PRESIGN_DELAY_SECONDS": env["KMI_OCSP_PRESIGN_DELAY_SECONDS"],
}

# --- REST API (web/api) ----------------------------------------------------------------------
# Token and session auth, one permission class asking pki.access, RFC 7807 errors, throttles
# kept in the cache (Redis when REDIS_URL is set). Rates: "N/second|minute|hour|day".
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "web.api.auth.ApiTokenAuthentication",
        # The browser's session, refused while it lacks the TOTP its user's roles need.
        "web.console.auth.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["web.api.permissions.KmiPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["web.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "web.api.pagination.IdCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "web.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "enroll": env["KMI_API_ENROLL_RATE"],
        "token": env["KMI_API_TOKEN_RATE"],
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "KMI API",
    "DESCRIPTION": "Enrollment, approval, certificates, keys and the audit trail of KMI.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "KeyTypeEnum": "pki.models.key.KeyType",
        "ServerKeyTypeEnum": "pki.serverkeys.SERVER_KEY_TYPE_CHOICES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "web.api.schema.add_problem_responses",
    ],
}

# --- ACME (RFC 8555) -----------------------------------------------------------------------
# Read by pki.acme.conf. Validation of challenges runs on Celery unless VALIDATE_INLINE (or
# CELERY_TASK_ALWAYS_EAGER) asks for it in the web process (useful with no worker running).
KMI_ACME = {
    "HTTP01_PORT": env["KMI_ACME_HTTP01_PORT"],
    "TLS_ALPN01_PORT": env["KMI_ACME_TLS_ALPN01_PORT"],
    # Comma-separated ip or ip:port of the resolvers for dns-01 and for A/AAAA lookups of
    # http-01 and tls-alpn-01; empty: the system's resolver.
    "DNS_RESOLVERS": env["KMI_ACME_DNS_RESOLVERS"],
    # Comma-separated name=ip overrides for those A/AAAA lookups, globs allowed
    # ("**.example.test=127.0.0.1"): what `make run` uses so the demo's .test names reach a
    # client on this machine. Empty (the default): DNS decides.
    "HOSTS": env["KMI_ACME_HOSTS"],
    "VALIDATION_TIMEOUT": env["KMI_ACME_VALIDATION_TIMEOUT"],
    "VALIDATE_INLINE": env["KMI_ACME_VALIDATE_INLINE"],
    "NONCE_TTL": env["KMI_ACME_NONCE_TTL"],
    "NONCE_PREFIX": f"{env['KMI_CACHE_PREFIX']}:acme:nonce:",
    "ORDER_LIFETIME": env["KMI_ACME_ORDER_LIFETIME"],
    "MAX_BODY_BYTES": env["KMI_ACME_MAX_BODY_BYTES"],
    "RETRY_AFTER": env["KMI_ACME_RETRY_AFTER"],
    # An account's valid authorization (until its order's expiry) counts again for a new order.
    "REUSE_AUTHORIZATIONS": env["KMI_ACME_REUSE_AUTHORIZATIONS"],
}

# --- device enrollment (web/protocols/est.py, web/protocols/scep.py) ----------------------------
KMI_DEVICES = {
    "EST_PROXY_SECRET": env["KMI_EST_PROXY_SECRET"],
    "RETRY_AFTER": env["KMI_DEVICE_RETRY_AFTER"],
}

# --- operator console (web/console; README "Operator console") --------------------------------
# Sessions with a TOTP second factor (django-otp) for the roles web.console.auth names, login
# throttling (django-axes, per user name and address), a Content-Security-Policy without inline
# script (django-csp), secure cookies over HTTPS.
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "axes"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "django_otp.middleware.OTPMiddleware",
)
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "web.console.middleware.ContentSecurityPolicy",  # django-csp's policy, built once
)
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as django-axes asks
AUTHENTICATION_BACKENDS = [
    "web.console.auth.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/console/login/"
KMI_CONSOLE = {
    # TOTP for every console user, not only administrators, CA operators and key recovery roles.
    "TOTP_FOR_ALL": env["KMI_CONSOLE_TOTP_FOR_ALL"],
}
OTP_TOTP_ISSUER = env["KMI_CONSOLE_TOTP_ISSUER"]  # the name authenticator apps show
AXES_FAILURE_LIMIT = env["KMI_LOGIN_FAILURE_LIMIT"]
AXES_COOLOFF_TIME = env["KMI_LOGIN_COOLOFF_MINUTES"] / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in the audit trail (user.signed_in)
# django-axes announces itself at INFO in every process (commands included); failures still log.
LOGGING["loggers"] = {"axes.apps": {"level": "WARNING"}}
AXES_LOCKOUT_TEMPLATE = "console/locked_out.html"
if env["KMI_BEHIND_TLS_PROXY"]:
    AXES_IPWARE_PROXY_COUNT = 1  # the client address is the one nginx saw
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env["KMI_SESSION_SECONDS"]
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Over HTTPS the session and CSRF cookies are marked Secure (web.console.middleware), whatever
# terminates TLS (KMI_BEHIND_TLS_PROXY tells Django a proxy did).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware"),
    "web.console.middleware.SecureCookiesOverHttps",
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    # Swagger UI (/api/docs/) ships an inline bootstrap script; everything else runs without one.
    "EXCLUDE_URL_PREFIXES": ["/api/docs/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
TEMPLATES[0]["OPTIONS"]["context_processors"].append("web.console.context.console")  # type: ignore[index]
TEMPLATES[0]["OPTIONS"]["builtins"] = ["web.console.templatetags.console_tags"]  # type: ignore[index]
