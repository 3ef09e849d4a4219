#!/bin/sh
# First start of the postgres container (an empty pgdata volume): KMI's two roles and its
# database, as docs/runbooks/database-roles.md describes. The owner (KMI_OWNER) runs migrations
# only; the application role (KMI_APP) is no superuser and no owner, so it cannot switch off the
# triggers that keep the audit trail append-only and certificates undeletable.
# Passwords come from Docker secrets (files), never from the environment.
set -eu

: "${KMI_DB:=kmi}" "${KMI_OWNER:=kmi_owner}" "${KMI_APP:=kmi_app}"
: "${KMI_SECRETS:=/run/secrets}"

psql -v ON_ERROR_STOP=1 -q --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v db="$KMI_DB" -v owner="$KMI_OWNER" -v app="$KMI_APP" \
  -v owner_pw="$(cat "$KMI_SECRETS/kmi_owner_password")" \
  -v app_pw="$(cat "$KMI_SECRETS/kmi_app_password")" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_pw';
CREATE ROLE :"app" LOGIN PASSWORD :'app_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE :"db" OWNER :"owner";
\connect :"db"
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app";
SQL
