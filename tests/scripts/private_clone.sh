#!/usr/bin/env bash
# A checkout inside a directory other users cannot enter (`/root` is mode 700, and so is every
# `mktemp -d`) still starts its PostgreSQL cluster, which runs as `postgres`.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
private=$(mktemp -d)
trap 'stop_postgres 2>/dev/null || true; rm -rf "$private"; rm -rf "${cluster:-/nonexistent}"' EXIT
[ "$(stat -c %a "$private")" = 700 ] || { echo "mktemp -d is not private here" >&2; exit 1; }
mkdir -p "$private/firesfu"
cp -r "$here/scripts" "$private/firesfu/scripts"
# shellcheck source=/dev/null
source "$private/firesfu/scripts/lib.sh"
[ "$FIRESFU_ROOT" = "$private/firesfu" ]
start_postgres private-probe
cluster=$(pg_dir private-probe)
case "$cluster" in "$private"*) echo "the cluster is inside the private checkout" >&2; exit 1 ;; esac
psql "$FIRESFU_TEST_PG/postgres" -qtAc "SELECT 'up'" | grep -qx up
stop_postgres
echo "private clone: PostgreSQL started and answered from $cluster"
