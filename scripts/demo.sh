#!/usr/bin/env bash
# The local demo: a private SoftHSM2 token, the keys of a cold 2-of-3 policy
# generated inside it, a PSBT built for that policy, checked and signed by the
# signer, finalized and verified by Bitcoin Core's script interpreter. Then the
# bank: the regtest stand-in and `coordinator serve` as processes, a user
# registered through the API, a deposit pending, then settled, Lightning in and out over
# a channel between the bank's node and an outside one (LND stand-ins over LDK), the
# ledger verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# PostgreSQL for the bank part: DATABASE_URL, or a private cluster when none answers.
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL="$(bash coordinator/scripts/pg-up.sh)"
  export DATABASE_URL
fi
# The demo starts the coordinator and the stand-ins as separate processes. Run from the
# shared build (`cargo run` would resolve features apart from it and build again).
bash scripts/build.sh
exec "${CARGO_TARGET_DIR:-target}/debug/demo" "$@"
