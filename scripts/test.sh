#!/usr/bin/env bash
# Runs the whole test suite: real SoftHSM2 tokens and a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL="$(bash coordinator/scripts/pg-up.sh)"
  export DATABASE_URL
fi
# The whole-system tests start the binaries (coordinator, stand-ins) as processes; the
# tests never run cargo themselves. Nextest then finds everything built.
bash scripts/build.sh
exec cargo nextest run --workspace --no-fail-fast "$@"
