#!/usr/bin/env bash
# WHEP playback with a real WHEP player (web/test/whep.mjs): Eyevinn's webrtc-player, in
# Chromium, plays what Alice publishes from the web app through the sidecar's WHEP endpoints
# (her participant endpoint and the room's presenter endpoint, which follows her screen share
# without a new offer); a wrong token is refused; unload() ends a session. Sidecar, PostgreSQL,
# one broadcast instance and the browser all run inside one network namespace (Chromium
# gathers no loopback candidates).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

browser_setup whep demo-whep

start_app_sidecar whep

start_app_broadcast

status=0
"${in_ns[@]}" node web/test/whep.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/whep.json" 2>"$logs/whep.log" || status=$?
cat "$logs/whep.json"
[ "$status" -eq 0 ] || show_failure "$logs/whep.log" "$logs/broadcast.log" "$logs/sidecar.log"
exit "$status"
