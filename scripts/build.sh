#!/usr/bin/env bash
# The one debug build the tests and the demo share: every binary and every test target of
# the workspace. Building with the test targets resolves features as the test run does
# (dev-dependencies included); building only the binaries (`-p`, `cargo run`) resolves
# them without, and compiles LDK Node, BDK and the coordinator a second time (minutes,
# and gigabytes of target/).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --workspace --bins --tests
