#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: SoftHSM2 (the HSM
# in tests and the demo), the PostgreSQL client tools (pgbench for the ledger
# bench), protoc (the LND gRPC client and the LND stand-in compile LND's .proto
# files at build time) and cargo-nextest (one process per test, so each test can
# have its own SoftHSM2 token directory). Safe to run again.
set -euo pipefail

need_apt=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need_apt+=(softhsm2)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
