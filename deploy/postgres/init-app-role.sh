#!/usr/bin/env bash
# Creates the role the hub connects as and the database it owns. The role is neither superuser
# nor BYPASSRLS, so the row-level security policies on the tenant tables apply to it (README,
# "Running on PostgreSQL"); owning the database lets it apply the migrations.
#
# The postgres image runs it once, on an empty data directory, from
# /docker-entrypoint-initdb.d (deploy/compose.yaml). It can be run against any server too, as a
# role allowed to create roles and databases; running it again changes nothing but the
# password, and takes superuser and BYPASSRLS away from the role should it have them:
#
#   PGHOST=db.example.com PGUSER=postgres STELLA_DB_PASSWORD=… deploy/postgres/init-app-role.sh
#
# Env: STELLA_DB_PASSWORD (required), STELLA_DB_USER (stella_app), STELLA_DB_NAME
# (stellaops_integrations); POSTGRES_USER and POSTGRES_DB, which the postgres image sets, or
# libpq's PG* variables for the connection.
set -euo pipefail

: "${STELLA_DB_PASSWORD:?set the password of the application role}"
export STELLA_DB_USER=${STELLA_DB_USER:-stella_app}
export STELLA_DB_NAME=${STELLA_DB_NAME:-stellaops_integrations}

# The values reach the server as quoted literals and identifiers (format's %L and %I) and
# never appear on a command line.
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
  --username "${POSTGRES_USER:-${PGUSER:-postgres}}" --dbname "${POSTGRES_DB:-${PGDATABASE:-postgres}}" <<'SQL'
\getenv app_user STELLA_DB_USER
\getenv app_db STELLA_DB_NAME
\getenv app_password STELLA_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L',
              :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_db') \gexec
SQL
echo "init-app-role: role $STELLA_DB_USER owns database $STELLA_DB_NAME (no superuser, no BYPASSRLS)"
