#!/bin/sh
# Run once by the postgres image on a fresh data volume (/docker-entrypoint-initdb.d/).
# Creates the two login roles bankcore uses and the database, owned by the owner role:
#   bankcore_owner  owns the tables; runs `migrate` and `grant_app_role` only
#   bankcore_app    what web, worker and beat connect as; gets only what grant_app_role gives it
# Neither is a superuser (the image's POSTGRES_USER stays the cluster's administrator).
set -eu
: "${BANKCORE_OWNER_PASSWORD:?set BANKCORE_OWNER_PASSWORD}"
: "${BANKCORE_APP_PASSWORD:?set BANKCORE_APP_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_password="$BANKCORE_OWNER_PASSWORD" -v app_password="$BANKCORE_APP_PASSWORD" <<'SQL'
CREATE ROLE bankcore_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE bankcore_app LOGIN PASSWORD :'app_password';
CREATE DATABASE bankcore OWNER bankcore_owner;
-- Only roles granted CONNECT (grant_app_role does) reach the database; nobody gets temporary tables.
REVOKE ALL ON DATABASE bankcore FROM PUBLIC;
SQL
