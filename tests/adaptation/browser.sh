#!/usr/bin/env bash
# Adaptation with real Chromium: simulcast layer choice by what each subscriber displays and by
# its downlink (a tbf-shaped link), dynacast (layers nobody receives stop being encoded), paused
# slots, audio before video under severe congestion. Servers (Firestore emulator, firesfu) run
# in one network namespace, Chromium in another, joined by a veth pair; web/test/adaptation.mjs
# shapes the server's egress toward one subscriber with tc (htb + tbf, matched by its port).
set -euo pipefail
source "$(dirname "$0")/../browser/lib.sh"
cd "$FIRESFU_ROOT"

room="adapt"
linked_setup adaptation demo-adapt
"${in_srv[@]}" curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
  "http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/$room" \
  -d '{"fields":{"name":{"stringValue":"Adaptation"}}}' >/dev/null
for r in "speak:Who speaks" "sim:SSRC simulcast"; do
  "${in_srv[@]}" curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
    "http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/${r%%:*}" \
    -d "{\"fields\":{\"name\":{\"stringValue\":\"${r#*:}\"}}}" >/dev/null
done

# Microphones for the speaker test: speech-like bursts and silence.
python3 tests/scripts/speech-wav.py "$logs/speech.wav" "$logs/silence.wav"

start_group BROADCAST "$logs/broadcast.log" "${in_srv[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND=10.78.0.1:4443 FIRESFU_ICE_TCP=false FIRESFU_DEV_NO_AUTH=true \
  APP_PORT=8080 FIRESFU_HTTP_BIND_IP=10.78.0.1 \
  RUST_LOG=info,firesfu=debug "$BIN"/firesfu broadcast
IN_NETNS="$srv" wait_http "http://10.78.0.1:8080/healthz" ok 30

status=0
"${in_cli[@]}" env FIRESFU_SERVER_NS="$srv" \
  node web/test/adaptation.mjs "$project" "$emulator" "$room" http://10.78.0.1:8080/stats \
    "$logs/speech.wav" "$logs/silence.wav" speak \
  >"$logs/adaptation.json" 2>"$logs/chromium.log" || status=$?
cat "$logs/adaptation.json"
if [ "$status" -ne 0 ]; then
  echo "adaptation test FAILED; logs in $logs" >&2
  tail -n 40 "$logs/chromium.log" "$logs/broadcast.log" >&2 || true
fi
exit "$status"
