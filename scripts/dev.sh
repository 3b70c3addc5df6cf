#!/usr/bin/env bash
# `make dev`: the whole thing on this machine against Google's emulators. Ctrl-C stops
# everything this script started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

project=${GOOGLE_CLOUD_PROJECT:-demo-firesfu}
logs="$FIRESFU_ROOT/.dev/logs"
mkdir -p "$logs"
trap 'echo; echo "stopping…"; stop_groups; stop_postgres' EXIT
trap 'exit 130' INT TERM

bash scripts/deps.sh
cargo build --bin firesfu

start_firestore_emulator "$logs"
start_pubsub_emulator "$logs" "$project"
start_postgres dev
psql "$FIRESFU_TEST_PG/postgres" -qtc "SELECT 1 FROM pg_database WHERE datname = 'firesfu'" | grep -q 1 \
  || psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE firesfu" >/dev/null
(cd web && node build.mjs)

sidecar_port=${FIRESFU_SIDECAR_PORT:-8090}
# A stable join-token key for this checkout (tokens survive sidecar restarts).
[ -f .dev/join-key.pem ] || openssl genpkey -algorithm ed25519 -out .dev/join-key.pem 2>/dev/null
# The camera key of this checkout: generated once, kept (the cameras in the dev database stay
# readable across restarts), never a fixed key in the repository (which someone would deploy).
[ -f .dev/camera-key ] || (umask 077 && openssl rand -base64 32 >.dev/camera-key)
start_group SIDECAR "$logs/sidecar.log" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" \
  DATABASE_URL="$FIRESFU_TEST_PG/firesfu" APP_PORT="$sidecar_port" FIRESFU_JOIN_KEY_FILE=.dev/join-key.pem \
  FIRESFU_CAMERA_KEY_FILE=.dev/camera-key FIRESFU_WEB_ROOT=web/dist \
  PUBSUB_EMULATOR_HOST="$PUBSUB_EMULATOR_HOST" FIRESFU_WEBHOOKS=true "$BIN"/firesfu sidecar
wait_http "http://127.0.0.1:$sidecar_port/healthz" ok 60

# Browsers never use loopback ICE candidates: advertise this machine's primary address.
advertise=${FIRESFU_ADVERTISE_IPS:-$(ip -4 route get 192.0.2.1 2>/dev/null | awk '{for(i=1;i<=NF;i++) if($i=="src") print $(i+1)}')}
advertise=${advertise:-127.0.0.1}
udp_port=${FIRESFU_UDP_PORT:-4443}
http_port=${APP_PORT:-8080}

monitor_port=${FIRESFU_MONITOR_PORT:-8070}
start_group MONITOR "$logs/monitor.log" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" \
  PUBSUB_EMULATOR_HOST="$PUBSUB_EMULATOR_HOST" APP_PORT="$monitor_port" FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  FIRESFU_EVENTS=true "$BIN"/firesfu monitor
wait_http "http://127.0.0.1:$monitor_port/healthz" ok 30

start_group BROADCAST "$logs/broadcast.log" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" \
  PUBSUB_EMULATOR_HOST="$PUBSUB_EMULATOR_HOST" FIRESFU_FLEET=true FIRESFU_EVENTS=true \
  FIRESFU_UDP_BIND="0.0.0.0:$udp_port" FIRESFU_ADVERTISE_IPS="$advertise" \
  FIRESFU_JWKS_URL="http://127.0.0.1:$sidecar_port/.well-known/jwks.json" APP_PORT="$http_port" \
  FIRESFU_CAMERA_KEY_FILE=.dev/camera-key \
  "$BIN"/firesfu broadcast
wait_http "http://127.0.0.1:$http_port/healthz" ok 30

cat <<INFO

firesfu is running (project $project):
  web app + API        http://127.0.0.1:$sidecar_port/   (OpenAPI: /openapi.json)
  Firestore emulator   http://$FIRESTORE_EMULATOR_HOST
  Pub/Sub emulator     http://$PUBSUB_EMULATOR_HOST
  PostgreSQL           $FIRESFU_TEST_PG/firesfu
  broadcast            media udp $advertise:$udp_port, http://127.0.0.1:$http_port/stats (join tokens required, fleet mode)
  monitor              http://127.0.0.1:$monitor_port/status (places rooms on broadcast instances)
  logs                 $logs/
  join from a client   docs/signalling.md; a join token from the API (docs/sidecar.md):
                       curl -s -XPOST localhost:$sidecar_port/v1/accounts -H content-type:application/json -d '{"username":"ada","password":"correct horse battery"}'
                       then POST /v1/sessions, POST /v1/rooms, POST /v1/rooms/{id}/join, and
                       cargo run -p testpeer -- --emulator $FIRESTORE_EMULATOR_HOST --project $project --room <id> --name ada --token <token> --uid <firebase.uid>
  webhooks             an API key: DATABASE_URL=$FIRESFU_TEST_PG/firesfu $BIN/firesfu apikey create --name dev --scope webhooks
                       then POST /v1/webhooks {"url": …} with it (docs/sidecar.md, "Webhooks")

Ctrl-C stops everything.
INFO
wait "$PID_BROADCAST"
