#!/usr/bin/env bash
# Prints a PostgreSQL URL for the coordinator's tests, bench and demo.
#
# If a server answers on 127.0.0.1:5432 (or on PGHOST/PGPORT when set), its URL is printed.
# A stopped Debian system cluster is started first. Otherwise a private cluster is created under the git-ignored folder
# coordinator/.pg (trust authentication, loopback only) and started on port 54329
# (PG_UP_PORT to change it), and its URL is printed. Idempotent: a running private
# cluster is reused. `pg-up.sh stop` stops the private cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$here/.pg/data"
log="$here/.pg/server.log"
host="${PGHOST:-127.0.0.1}"
port="${PGPORT:-5432}"
private_port="${PG_UP_PORT:-54329}"

# Debian installs the server binaries off PATH, under /usr/lib/postgresql/<version>/bin.
if ! command -v initdb >/dev/null 2>&1; then
    for bin in /usr/lib/postgresql/*/bin; do
        [[ -x "$bin/initdb" ]] && PATH="$bin:$PATH"
    done
fi

answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2" >/dev/null 2>&1
    else
        (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1
    fi
}

# initdb and the server refuse to run as root: use the postgres user when we are root.
run=()
if [[ "$(id -u)" == "0" ]]; then
    run=(runuser -u postgres --)
fi

if [[ "${1:-}" == "stop" ]]; then
    if [[ -f "$data/postmaster.pid" ]]; then
        "${run[@]}" pg_ctl -D "$data" -m fast stop >/dev/null
    fi
    exit 0
fi

if answers "$host" "$port"; then
    echo "postgres://postgres@$host:$port/postgres"
    exit 0
fi

# A Debian system cluster that is installed but stopped: start it.
if [[ "$host:$port" == "127.0.0.1:5432" ]] && command -v pg_ctlcluster >/dev/null 2>&1 \
    && [[ -d /etc/postgresql ]]; then
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 20); do
        if answers "$host" "$port"; then
            echo "postgres://postgres@$host:$port/postgres"
            exit 0
        fi
        sleep 0.5
    done
fi

if ! answers 127.0.0.1 "$private_port"; then
    for tool in initdb pg_ctl; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "pg-up: no server on $host:$port and '$tool' is not on PATH" >&2
            exit 1
        }
    done
    mkdir -p "$here/.pg"
    if [[ "$(id -u)" == "0" ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown -R postgres "$here/.pg"
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        "${run[@]}" initdb -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    "${run[@]}" pg_ctl -D "$data" -l "$log" -w \
        -o "-p $private_port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200" \
        start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$private_port/postgres"
