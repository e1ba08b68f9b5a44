#!/usr/bin/env bash
# Runs the whole test suite: real SoftHSM2 tokens and a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL="$(bash coordinator/scripts/pg-up.sh)"
  export DATABASE_URL
fi
# The whole-system tests start these as processes (the demo too); the tests never run
# cargo themselves.
cargo build --quiet -p coordinator -p chain-standin
# The LND stand-in is its own workspace (LDK Node cannot share this lockfile: see its
# Cargo.toml); built into the same target directory, where its spawn helper finds it.
cargo build --quiet --manifest-path tests/standins/lnd/server/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-target}"
exec cargo nextest run --workspace --no-fail-fast "$@"
