#!/usr/bin/env bash
# Adaptation with real Chromium: simulcast layer choice by what each subscriber displays,
# dynacast (layers nobody receives stop being encoded) and paused slots. See
# web/test/adaptation.mjs for what is checked.
set -euo pipefail
source "$(dirname "$0")/../browser/lib.sh"
cd "$FIRESFU_ROOT"

room="adapt"
browser_setup adaptation demo-adapt

"${in_ns[@]}" curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
  "http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/$room" \
  -d '{"fields":{"name":{"stringValue":"Adaptation"}}}' >/dev/null

start_group BROADCAST "$logs/broadcast.log" "${in_ns[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND=10.77.0.1:4443 FIRESFU_DEV_NO_AUTH=true APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  RUST_LOG=info,firesfu=debug "$BIN"/firesfu broadcast
wait_http "http://127.0.0.1:8080/healthz" ok 30

status=0
"${in_ns[@]}" node web/test/adaptation.mjs "$project" "$emulator" "$room" http://127.0.0.1:8080/stats \
  >"$logs/adaptation.json" 2>"$logs/chromium.log" || status=$?
cat "$logs/adaptation.json"
[ "$status" -eq 0 ] || show_failure "$logs/chromium.log" "$logs/broadcast.log"
exit "$status"
