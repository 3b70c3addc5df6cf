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
"${in_srv[@]}" curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
  "http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/speak" \
  -d '{"fields":{"name":{"stringValue":"Who speaks"}}}' >/dev/null

# Microphones for the speaker test: speech-like bursts (syllables of noise, 50–150 ms gaps, a
# breath every few seconds) and silence, 48 kHz mono; Chromium loops them.
python3 - "$logs/speech.wav" "$logs/silence.wav" <<'PY'
import math, random, struct, sys, wave
rate, seconds = 48000, 20
random.seed(7)
def write(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(max(-1, min(1, x)) * 32767)) for x in samples))
speech, t = [], 0
while len(speech) < rate * seconds:
    syllable = int(rate * random.uniform(0.15, 0.3))
    speech += [0.35 * math.sin(math.pi * i / syllable) * random.uniform(-1, 1) for i in range(syllable)]
    speech += [0.0] * int(rate * (random.uniform(0.05, 0.15) if random.random() > 0.1 else 0.4))
write(sys.argv[1], speech[: rate * seconds])
write(sys.argv[2], [0.0] * rate * seconds)
PY

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
