#!/bin/sh
# First start of the compose stack's PostgreSQL: one database and one login per service,
# each owned by its own user and closed to the other (the signer's database is its own,
# docs/adr/0006). Passwords come from the compose secrets.
set -eu
coordinator_pw="$(cat /run/secrets/coordinator_db_password)"
signer_pw="$(cat /run/secrets/signer_db_password)"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v coordinator_pw="$coordinator_pw" -v signer_pw="$signer_pw" <<'SQL'
CREATE ROLE coordinator LOGIN PASSWORD :'coordinator_pw';
CREATE ROLE signer LOGIN PASSWORD :'signer_pw';
CREATE DATABASE coordinator OWNER coordinator;
CREATE DATABASE signer OWNER signer;
REVOKE ALL ON DATABASE coordinator FROM PUBLIC;
REVOKE ALL ON DATABASE signer FROM PUBLIC;
SQL
