#!/usr/bin/env bash
# Chromium smoke test: a real browser (fake camera, Firebase JS SDK, security rules enforced by
# the emulator) and a str0m peer meet in a room through firesfu.
#
# Chromium never offers loopback ICE candidates, so everything runs inside a network namespace
# made here, with a veth pair (10.77.0.1, 10.77.0.2) whose addresses Chromium does use.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

room="smoke"
browser_setup smoke demo-smoke

"${in_ns[@]}" curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
  "http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/$room" \
  -d '{"fields":{"name":{"stringValue":"Smoke"}}}' >/dev/null

start_group BROADCAST "$logs/broadcast.log" "${in_ns[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND=10.77.0.1:4443 FIRESFU_DEV_NO_AUTH=true APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  RUST_LOG=info,firesfu=debug "$BIN"/firesfu broadcast
wait_http "http://127.0.0.1:8080/healthz" ok 30

# The str0m peer publishes real VP8 (so Chromium can decode it) and reports what it got.
# (`ip netns exec` forks: signal the whole process group, not the pid.)
setsid "${in_ns[@]}" "$BIN"/testpeer --emulator "$emulator" --project "$project" --room "$room" \
  --name str0m --bind-ip 10.77.0.2 --ivf tests/data/clip.ivf --seconds 60 \
  >"$logs/testpeer.json" 2>"$logs/testpeer.log" &
peer=$!
STARTED_GROUPS+=("$peer")

status=0
"${in_ns[@]}" node web/test/smoke.mjs "$project" "$emulator" "$room" chromium "$artifacts" \
  >"$logs/chromium.json" 2>"$logs/chromium.log" || status=$?
echo "chromium:"; cat "$logs/chromium.json"

# Give the peer time to count Chromium's media, then let it leave.
sleep 2
kill -TERM -- "-$peer" 2>/dev/null || true
for _ in $(seq 100); do kill -0 -- "-$peer" 2>/dev/null || break; sleep 0.1; done
echo "str0m peer:"; cat "$logs/testpeer.json"

python3 - "$logs/chromium.json" "$logs/testpeer.json" <<'PY' || status=1
import json, sys
chromium = json.load(open(sys.argv[1]))
peer = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
decoded = max((r.get("framesDecoded") or 0) for r in chromium["inbound"] if r["kind"] == "video")
got = peer["received"].get("chromium", {})
print(f"chromium decoded {decoded} frames from the str0m peer; "
      f"the str0m peer received {got.get('video', 0)} video and {got.get('audio', 0)} audio frames from chromium")
assert chromium["ok"] and decoded > 0, "Chromium decoded nothing"
assert got.get("video", 0) > 0 and got.get("audio", 0) > 0, "the str0m peer received nothing from Chromium"
assert peer["corrupt"] == 0
PY
[ "$status" -eq 0 ] || show_failure "$logs/chromium.log" "$logs/broadcast.log"
exit "$status"
