#!/usr/bin/env bash
# The meeting web app end to end: two Chromium users sign up through the sidecar (PostgreSQL),
# one creates a room, both meet in it through a fleet of two firesfu broadcast instances and a
# monitor (join tokens verified against the sidecar's JWKS), and web/test/app.mjs checks what
# each of them sees, including the automatic re-join when the room's instance drains.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

browser_setup app demo-app

start_app_sidecar app

# A fleet of two broadcast instances and a monitor: the test drains the room's instance and
# checks that both browsers reconnect by themselves.
pubsub="127.0.0.1:8085"
start_group PUBSUB "$logs/pubsub-emulator.log" "${in_ns[@]}" \
  gcloud beta emulators pubsub start --host-port="$pubsub" --project="$project"
wait_http "http://$pubsub/" Ok 90
start_group MONITOR "$logs/monitor.log" "${in_ns[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" PUBSUB_EMULATOR_HOST="$pubsub" \
  FIRESFU_MONITOR_ID=monitor APP_PORT=8070 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  RUST_LOG=info,firesfu=debug "$BIN"/firesfu monitor
wait_http "http://127.0.0.1:8070/healthz" ok 30

pids=()
for n in 1 2; do
  start_group "BROADCAST$n" "$logs/broadcast-$n.log" "${in_ns[@]}" env \
    GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
    PUBSUB_EMULATOR_HOST="$pubsub" FIRESFU_FLEET=true FIRESFU_LOAD_REPORT_MS=500 \
    FIRESFU_INSTANCE_ID="bc-$n" FIRESFU_UDP_BIND="10.77.0.1:$((4442 + n))" \
    APP_PORT=$((8081 + n)) FIRESFU_HTTP_BIND_IP=127.0.0.1 \
    FIRESFU_JWKS_URL="http://$sidecar/.well-known/jwks.json" \
    RUST_LOG="${FIRESFU_TEST_RUST_LOG:-info,firesfu=debug}" "$BIN"/firesfu broadcast
  wait_http "http://127.0.0.1:$((8081 + n))/healthz" ok 30
  pid_var="PID_BROADCAST$n"
  pids+=("bc-$n:${!pid_var}")
done
wait_http "http://127.0.0.1:8070/status" '"instancesAlive":2' 30

# Alice's microphone plays speech (the speaker test); Bob's is Chromium's fake beep.
python3 tests/scripts/speech-wav.py "$logs/speech.wav" "$logs/silence.wav"

status=0
"${in_ns[@]}" env FIRESFU_SPEECH_WAV="$logs/speech.wav" FIRESFU_EMULATOR="$emulator" FIRESFU_PROJECT="$project" FIRESFU_BROADCASTS="${pids[*]}" \
  node web/test/app.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/app.json" 2>"$logs/app.log" || status=$?
cat "$logs/app.json"
[ "$status" -eq 0 ] || show_failure "$logs/app.log" "$logs"/broadcast-*.log "$logs/monitor.log" "$logs/sidecar.log"
exit "$status"
