#!/usr/bin/env bash
# schemathesis against the live sidecar: every check, a fixed seed and a bounded number of
# examples per operation, with and without an access token, and the webhook routes with an API
# key; zero failures required.
#
# Needs FIRESTORE_EMULATOR_HOST and FIRESFU_TEST_PG (`make test` exports both).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$FIRESFU_ROOT"
: "${FIRESTORE_EMULATOR_HOST:?run from make test}" "${FIRESFU_TEST_PG:?run from make test}"

if ! command -v st >/dev/null || ! python3 -c 'import schemathesis' 2>/dev/null; then
  echo "installing schemathesis 4"
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis==4.*'
fi

logs="$FIRESFU_ROOT/target/test-logs/schemathesis"
mkdir -p "$logs"
db="schemathesis_$$"
psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
port=$(free_port)
trap 'stop_groups; psql "$FIRESFU_TEST_PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
# The fuzzer registers hundreds of accounts from one address: the per-address registration
# limit (tested on its own in tests/sidecar_abuse.rs) is raised for this run.
start_group SIDECAR "$logs/sidecar.log" env GOOGLE_CLOUD_PROJECT="demo-schemathesis-$$" \
  FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" DATABASE_URL="$FIRESFU_TEST_PG/$db" \
  APP_PORT="$port" FIRESFU_SIDECAR_BIND_IP=127.0.0.1 FIRESFU_REGISTRATIONS_PER_HOUR=1000000 \
  "$BIN/firesfu" sidecar
wait_http "http://127.0.0.1:$port/healthz" ok 30
api="http://127.0.0.1:$port"
creds='{"username":"fuzzer","password":"correct horse battery"}'
curl -fsS -XPOST "$api/v1/accounts" -H content-type:application/json -d "$creds" >/dev/null
token=$(curl -fsS -XPOST "$api/v1/sessions" -H content-type:application/json -d "$creds" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')

run() {
  # Logging out and erasing the account would end the run's own session.
  (cd tests/api && st run "$api/openapi.json" --checks all --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" \
    --seed 42 --exclude-operation-id logout --exclude-operation-id eraseMe --no-color "$@")
}
status=0
echo "-- with an access token"
run -H "Authorization: Bearer $token" >"$logs/with-token.txt" 2>&1 || status=1
tail -n 6 "$logs/with-token.txt"
echo "-- without one"
run >"$logs/without-token.txt" 2>&1 || status=1
tail -n 6 "$logs/without-token.txt"
echo "-- the webhook and server routes with an API key (every scope)"
key=$(DATABASE_URL="$FIRESFU_TEST_PG/$db" "$BIN/firesfu" apikey create --name schemathesis --scope webhooks \
  --scope rooms:read --scope participants:write --scope tokens:write 2>/dev/null)
run --include-tag webhooks --include-tag server -H "Authorization: Bearer $key" >"$logs/with-api-key.txt" 2>&1 || status=1
tail -n 6 "$logs/with-api-key.txt"
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures; reports in $logs" >&2
  grep -E "^_+ |^- |curl" "$logs"/*.txt >&2 || true
fi
exit "$status"
