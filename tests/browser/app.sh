#!/usr/bin/env bash
# The meeting web app end to end: two Chromium users sign up through the sidecar (PostgreSQL),
# one creates a room, both meet in it through firesfu broadcast (join tokens verified against
# the sidecar's JWKS), and web/test/app.mjs checks what each of them sees.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

browser_setup app demo-app

start_postgres "$FIRESFU_ROOT/target/test-pg-app"
"${in_ns[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "DROP DATABASE IF EXISTS firesfu_app" >/dev/null
"${in_ns[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE firesfu_app" >/dev/null

sidecar="127.0.0.1:8090"
start_group SIDECAR "$logs/sidecar.log" "${in_ns[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  DATABASE_URL="$FIRESFU_TEST_PG/firesfu_app" APP_PORT=8090 FIRESFU_WEB_ROOT=web/dist \
  RUST_LOG=info target/debug/firesfu sidecar
wait_http "http://$sidecar/readyz" ready 60

start_group BROADCAST "$logs/broadcast.log" "${in_ns[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND=10.77.0.1:4443 APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  FIRESFU_JWKS_URL="http://$sidecar/.well-known/jwks.json" \
  RUST_LOG="${FIRESFU_TEST_RUST_LOG:-info,firesfu=debug}" target/debug/firesfu broadcast
wait_http "http://127.0.0.1:8080/healthz" ok 30

status=0
"${in_ns[@]}" node web/test/app.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/app.json" 2>"$logs/app.log" || status=$?
cat "$logs/app.json"
[ "$status" -eq 0 ] || show_failure "$logs/app.log" "$logs/broadcast.log" "$logs/sidecar.log"
exit "$status"
