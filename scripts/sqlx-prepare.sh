#!/usr/bin/env bash
# Regenerates the committed offline data of sqlx's query macros (coordinator/.sqlx and
# signer/.sqlx). Builds never need a database: .cargo/config.toml sets SQLX_OFFLINE=true,
# and the macros check each query against this data. Run this after changing a query
# checked at compile time or a migration, then commit the .sqlx directories.
#
# For each crate it creates a scratch database on the server of DATABASE_URL (a superuser;
# without it, the server coordinator/scripts/pg-up.sh finds or starts), applies that crate's
# migrations (the coordinator and the signer have separate databases), and compiles the
# crate with the macros online, which write one file per query (what `cargo sqlx prepare`
# does, without needing sqlx-cli). The scratch databases are dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

# As the tests: DATABASE_URL, else a server pg-up.sh finds or starts.
server="${DATABASE_URL:-$(bash coordinator/scripts/pg-up.sh)}"
# The server URL without its database: postgres://user@host:port
base="${server%%\?*}"
base="${base%/*}"
created=()
cleanup() {
  for db in "${created[@]}"; do
    psql -q "$server" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
  done
}
trap cleanup EXIT

# Both crates, or those named: scripts/sqlx-prepare.sh signer
crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(coordinator signer)
for crate in "${crates[@]}"; do
  db="sqlx_prepare_${crate}_$$"
  psql -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE \"$db\"" >/dev/null
  created+=("$db")
  for migration in "$crate"/migrations/*.sql; do
    psql -q -v ON_ERROR_STOP=1 --single-transaction "$base/$db" -f "$migration" >/dev/null
  done
  rm -rf "$crate/.sqlx"
  mkdir -p "$crate/.sqlx"
  # The macros do not tell cargo which files or variables they read: touch the crate so
  # that it is compiled again, online, writing its query data.
  find "$crate/src" -name '*.rs' -exec touch {} +
  SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/$crate/.sqlx" DATABASE_URL="$base/$db" \
    cargo check --quiet -p "$crate" --lib
  echo "sqlx-prepare: $crate/.sqlx: $(find "$crate/.sqlx" -name 'query-*.json' | wc -l) queries"
done
