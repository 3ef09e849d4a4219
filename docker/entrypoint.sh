#!/bin/sh
# Roles of the KMI image. KMI_ROLE is exported so the health check knows what to probe.
set -eu

role="${1:-web}"
export KMI_ROLE="$role"

case "$role" in
  migrate)
    # One-shot, as the tables' owner (DATABASE_URL_FILE names the owner's URL): the schema, then
    # take back from the application role what it must never do (docs/runbooks/database-roles.md;
    # migrations 0017's and 0021's triggers refuse it for every role in any case).
    python manage.py migrate --noinput
    exec python manage.py shell <<'PY'
import os, re
from django.db import connection
role = os.environ.get("KMI_DB_APP_ROLE", "kmi_app")
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
    raise SystemExit("KMI_DB_APP_ROLE must be a plain PostgreSQL role name")
if connection.vendor == "postgresql":
    with connection.cursor() as cursor:
        cursor.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON pki_auditevent, pki_auditcheckpoint FROM {role}")
        cursor.execute(f"REVOKE DELETE, TRUNCATE ON pki_certificate FROM {role}")
        cursor.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON pki_blockedkey FROM {role}")
PY
    ;;
  init)
    # One-shot, on the signer's secrets: first CAs, KMI's own TLS certificate. The `migrate`
    # service made the schema; without one (a single-role install) init migrates itself.
    python manage.py migrate --check >/dev/null 2>&1 || python manage.py migrate --noinput
    if ! python manage.py shell -c "import sys; from pki.models import CertificateAuthority as C; sys.exit(0 if C.objects.filter(name='${KMI_SERVICE_CA:-issuing}').exists() else 1)"; then
      python manage.py init_ca --name "${KMI_ROOT_CA_NAME:-root}" \
        --subject "${KMI_ROOT_SUBJECT:-CN=KMI Root CA}" --key-type "${KMI_ROOT_KEY_TYPE:-ec-p384}"
      python manage.py init_ca --name "${KMI_SERVICE_CA:-issuing}" --parent "${KMI_ROOT_CA_NAME:-root}" \
        --subject "${KMI_ISSUING_SUBJECT:-CN=KMI Issuing CA}" --key-type "${KMI_ISSUING_KEY_TYPE:-ec-p256}" \
        --path-length 0
    fi
    # The transparency log every issuance feeds (issue 15's contract: the log `kmi`).
    if ! python manage.py shell -c "import sys; from pki.models import TransparencyLog as L; sys.exit(0 if L.objects.filter(name='kmi').exists() else 1)"; then
      python manage.py create_log kmi
    fi
    exec python manage.py issue_service_cert
    ;;
  web)
    python manage.py collectstatic --noinput --verbosity 0
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
      rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"/* 2>/dev/null || true
      mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    fi
    exec gunicorn web.wsgi:application --bind 0.0.0.0:8000 \
      --workers "${KMI_WEB_WORKERS:-4}" --timeout "${KMI_WEB_TIMEOUT:-60}" \
      --forwarded-allow-ips "*" --access-logfile -
    ;;
  worker)
    # Lifecycle jobs that need no CA key (expiry notices, key deactivation and destruction).
    exec celery -A web worker --queues celery --loglevel "${KMI_LOG_LEVEL:-INFO}" \
      --concurrency "${KMI_WORKER_CONCURRENCY:-2}" --hostname "worker@%h"
    ;;
  signer)
    # The only role that holds the KEK: every CA-key operation runs here.
    exec celery -A web worker --queues signing --loglevel "${KMI_LOG_LEVEL:-INFO}" \
      --concurrency "${KMI_SIGNER_CONCURRENCY:-2}" --hostname "signer@%h"
    ;;
  beat)
    exec celery -A web beat --loglevel "${KMI_LOG_LEVEL:-INFO}" \
      --schedule "${KMI_DATA_DIR:-/var/lib/kmi}/celerybeat-schedule"
    ;;
  *)
    exec "$@"
    ;;
esac
