#!/bin/sh
# Development signer only (SoftHSM2, a software token: never for real funds).
# Keeps the token under $SOFTHSM_DIR (a volume), makes it and the profile's keys on the
# first start, then runs `signer` with the arguments given (default `serve`).
# PINs come from HSM_SO_PIN_FILE and HSM_USER_PIN_FILE, as for hsm-config and the signer.
set -eu
dir="${SOFTHSM_DIR:?set SOFTHSM_DIR to a writable volume}"
profile="${HSM_PROFILE:?set HSM_PROFILE}"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
mkdir -p "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir" >"$SOFTHSM2_CONF"

if [ ! -e "$dir/token-ready" ]; then
    # A start that died half-way leaves a token without its keys: SoftHSM would accept a
    # second token with the same label, so start again from nothing (dev data only).
    rm -rf "$dir/tokens"
    mkdir -p "$dir/tokens"
    echo "signer-dev: making a SoftHSM2 token and the profile's keys (development only)" >&2
    hsm-config init-token
    # The profile's `keys = ["a", "b"]` line, as words.
    keys="$(sed -n 's/^keys *= *\[\(.*\)\].*/\1/p' "$profile" | tr -d '",')"
    [ -n "$keys" ] || { echo "signer-dev: $profile names no keys" >&2; exit 1; }
    for label in $keys; do
        hsm-config gen-key --label "$label"
    done
    touch "$dir/token-ready"
fi
exec signer "$@"
