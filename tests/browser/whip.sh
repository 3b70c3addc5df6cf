#!/usr/bin/env bash
# WHIP ingest with a real WHIP client (web/test/whip.mjs): Eyevinn's whip-web-client, driving
# Chromium's WebRTC stack, publishes VP8 + Opus and H.264 + Opus into a room through the
# sidecar's WHIP endpoint and Alice decodes both in the web app; a wrong token is refused;
# DELETE ends a session. Sidecar, PostgreSQL, one broadcast instance and the browser all run
# inside one network namespace (Chromium gathers no loopback candidates).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

browser_setup whip demo-whip

start_app_sidecar whip

start_app_broadcast

status=0
"${in_ns[@]}" env FIRESFU_SIDECAR_LOG="$logs/sidecar.log" \
  node web/test/whip.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/whip.json" 2>"$logs/whip.log" || status=$?
cat "$logs/whip.json"
[ "$status" -eq 0 ] || show_failure "$logs/whip.log" "$logs/broadcast.log" "$logs/sidecar.log"
exit "$status"
