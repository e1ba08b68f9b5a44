#!/usr/bin/env bash
# The local demo: a private SoftHSM2 token, the keys of a cold 2-of-3 policy
# generated inside it, a PSBT built for that policy, checked and signed by the
# signer, finalized and verified by Bitcoin Core's script interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --quiet -p system-tests --bin demo -- "$@"
