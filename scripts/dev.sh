#!/usr/bin/env bash
# `make dev`: the whole thing on this machine against Google's emulators. Ctrl-C stops
# everything this script started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

project=${GOOGLE_CLOUD_PROJECT:-demo-firesfu}
logs="$FIRESFU_ROOT/.dev/logs"
mkdir -p "$logs"
trap 'echo; echo "stopping…"; stop_groups' EXIT
trap 'exit 130' INT TERM

bash scripts/deps.sh
cargo build --bin firesfu

start_firestore_emulator "$logs"
start_pubsub_emulator "$logs" "$project"

# A room to join (rooms are the application's; the sidecar will own them).
curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
  "http://$FIRESTORE_EMULATOR_HOST/v1/projects/$project/databases/(default)/documents/rooms/demo" \
  -d '{"fields":{"name":{"stringValue":"Demo room"}}}' >/dev/null

# Browsers never use loopback ICE candidates: advertise this machine's primary address.
advertise=${FIRESFU_ADVERTISE_IPS:-$(ip -4 route get 192.0.2.1 2>/dev/null | awk '{for(i=1;i<=NF;i++) if($i=="src") print $(i+1)}')}
advertise=${advertise:-127.0.0.1}
udp_port=${FIRESFU_UDP_PORT:-4443}
http_port=${APP_PORT:-8080}

start_group BROADCAST "$logs/broadcast.log" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" \
  FIRESFU_UDP_BIND="0.0.0.0:$udp_port" FIRESFU_ADVERTISE_IPS="$advertise" \
  FIRESFU_DEV_NO_AUTH=true APP_PORT="$http_port" \
  target/debug/firesfu broadcast
wait_http "http://127.0.0.1:$http_port/healthz" ok 30

cat <<INFO

firesfu is running (project $project):
  Firestore emulator   http://$FIRESTORE_EMULATOR_HOST        (room "demo" created)
  Pub/Sub emulator     http://$PUBSUB_EMULATOR_HOST
  broadcast            media udp $advertise:$udp_port, http://127.0.0.1:$http_port/stats
  logs                 $logs/
  join from a client   see docs/signalling.md; e.g.
                       cargo run -p testpeer -- --emulator $FIRESTORE_EMULATOR_HOST --project $project --room demo --name ada

Ctrl-C stops everything.
INFO
wait "$PID_BROADCAST"
