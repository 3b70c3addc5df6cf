#!/usr/bin/env bash
# The web app's presentation features with three Chromium users (sidecar, PostgreSQL, one
# broadcast instance, all inside a network namespace): screen sharing and the presenter
# layout, one presenter at a time, pin and layouts, raised hands, the unread-chat badge,
# switching devices mid-call, the muted hint, axe-core's accessibility audit of every view and
# a keyboard-only walk. web/test/present.mjs asserts what each user sees; screenshots of the
# presenter layout (desktop and phone) go to target/test-artifacts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

browser_setup present demo-present

start_app_sidecar present

start_app_broadcast

# Alice's microphone plays speech (the muted hint); the shared screen is a page of fine text.
python3 tests/scripts/speech-wav.py "$logs/speech.wav" "$logs/silence.wav"

status=0
"${in_ns[@]}" env FIRESFU_SPEECH_WAV="$logs/speech.wav" \
  node web/test/present.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/present.json" 2>"$logs/present.log" || status=$?
cat "$logs/present.json"
[ "$status" -eq 0 ] || show_failure "$logs/present.log" "$logs/broadcast.log" "$logs/sidecar.log"
exit "$status"
