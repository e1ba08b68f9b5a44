#!/usr/bin/env bash
# BDK's Python bindings full-scan a wallet from the regtest stand-in.
# Installs bdkpython from PyPI when missing, builds the stand-in, runs the check.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
if ! python3 -c "import bdkpython" 2>/dev/null; then
  # A Debian system Python refuses plain pip installs (PEP 668); pyenv's does not.
  python3 -m pip install --quiet "bdkpython==3.1.1" \
    || python3 -m pip install --quiet --break-system-packages "bdkpython==3.1.1"
fi
(cd "$root" && cargo build --quiet -p chain-standin --bin regtest-standin)
exec python3 "$here/bdkpython_scan.py" "${REGTEST_STANDIN_BIN:-$root/target/debug/regtest-standin}"
