#!/usr/bin/env bash
# aiortc interop test: a third, independent WebRTC stack (Python aiortc 1.16) and a str0m peer
# meet in a room through firesfu, each publishing audio + VP8 video, and each must receive the
# other's media (aiortc must decode the str0m peer's VP8).
#
# The aiortc peer (tests/interop/aiortc_peer.py) speaks docs/signalling.md over the Firestore
# emulator's REST API. aioice never gathers loopback addresses, so everything runs inside a
# network namespace made here, with a veth pair (10.77.0.1 for the server, 10.77.0.2 for peers).
#
# Binaries: ${CARGO_TARGET_DIR:-/var/tmp/firesfu-target}/debug/{firesfu,testpeer}
# (cargo build -p firesfu -p testpeer --bins). Logs: target/test-logs/interop-aiortc/.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$FIRESFU_ROOT"

bin="$BIN"
for b in firesfu testpeer; do
  if [ ! -x "$bin/$b" ]; then
    echo "missing $bin/$b: build it first (cargo build -p firesfu -p testpeer --bins)" >&2
    exit 1
  fi
done

# aiortc from PyPI, once.
if ! python3 -c 'import aiortc' 2>/dev/null; then
  echo "installing aiortc 1.16"
  python3 -m pip install --quiet --disable-pip-version-check 'aiortc==1.16.*'
fi

room="aiortc"
project="demo-aiortc-$$"
ns="fsfu-aiortc-$$"
logs="$FIRESFU_ROOT/target/test-logs/interop-aiortc"
mkdir -p "$logs"
rm -f "$logs"/*

cleanup() {
  stop_groups
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_failure() {
  echo "aiortc interop test FAILED; logs in $logs" >&2
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- $f" >&2
    tail -n 60 "$f" >&2 || true
  done
}

make_netns "$ns"
in_ns=(ip netns exec "$ns")
export IN_NETNS="$ns"

emulator="127.0.0.1:8081" # the namespace is fresh: every port is free
start_group FIRESTORE "$logs/firestore-emulator.log" "${in_ns[@]}" \
  gcloud emulators firestore start --host-port="$emulator"
wait_http "http://$emulator/" Ok 60 || { show_failure "$logs/firestore-emulator.log"; exit 1; }

"${in_ns[@]}" curl -fsS -X PATCH -H "Authorization: Bearer owner" -H "Content-Type: application/json" \
  "http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/$room" \
  -d '{"fields":{"name":{"stringValue":"aiortc interop"}}}' >/dev/null

start_group BROADCAST "$logs/broadcast.log" "${in_ns[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND=10.77.0.1:4443 FIRESFU_DEV_NO_AUTH=true APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  RUST_LOG=info,firesfu=debug "$bin/firesfu" broadcast
wait_http "http://127.0.0.1:8080/healthz" ok 30 || { show_failure "$logs/broadcast.log"; exit 1; }

# The str0m peer publishes real VP8 (so aiortc can decode it) and tagged audio, and reports what
# it got. It is stopped (SIGTERM, whole process group) once the aiortc peer has left.
setsid "${in_ns[@]}" "$bin/testpeer" --emulator "$emulator" --project "$project" --room "$room" \
  --name str0m --bind-ip 10.77.0.2 --ivf tests/data/clip.ivf --seconds 40 \
  >"$logs/testpeer.json" 2>"$logs/testpeer.log" &
peer=$!
STARTED_GROUPS+=("$peer")

# Wait until the str0m peer is in the roster, so that the aiortc peer's first answer already
# wants one audio and one video slot. The aiortc peer offers one audio slot and no video slot:
# its first offer has two audio m-lines in one BUNDLE (the answer must carry usable candidates
# for that), and it must re-offer for the missing video slot.
participant="http://$emulator/v1/projects/$project/databases/(default)/documents/rooms/$room/participants/str0m"
for _ in $(seq 100); do
  kill -0 "$peer" 2>/dev/null || break
  "${in_ns[@]}" curl -fsS -o /dev/null -H "Authorization: Bearer owner" "$participant" 2>/dev/null && break
  sleep 0.1
done

status=0
"${in_ns[@]}" python3 tests/interop/aiortc_peer.py --emulator "$emulator" --project "$project" \
  --room "$room" --name aiortc --bind-ip 10.77.0.2 --recv-audio 1 --recv-video 0 --seconds 10 --log-sdp \
  >"$logs/aiortc.json" 2>"$logs/aiortc.log" || status=$?
echo "aiortc peer:"; cat "$logs/aiortc.json"

kill -TERM -- "-$peer" 2>/dev/null || true
for _ in $(seq 100); do kill -0 -- "-$peer" 2>/dev/null || break; sleep 0.1; done
echo "str0m peer:"; cat "$logs/testpeer.json"

python3 - "$logs/aiortc.json" "$logs/testpeer.json" <<'PY' || status=1
import json, sys

def last_json(path):
    lines = [l for l in open(path).read().splitlines() if l.strip().startswith("{")]
    assert lines, f"{path}: no JSON report"
    return json.loads(lines[-1])

aiortc = last_json(sys.argv[1])
peer = last_json(sys.argv[2])
got_a = aiortc["received"].get("str0m", {})
got_p = peer["received"].get("aiortc", {})
print(f"aiortc decoded {got_a.get('video', 0)} video frames and received {got_a.get('audio', 0)} audio frames "
      f"from the str0m peer (state {aiortc['state']}, answered revision {aiortc['answeredRevision']}, "
      f"error {aiortc['error']}); the str0m peer received {got_p.get('video', 0)} video and "
      f"{got_p.get('audio', 0)} audio frames from aiortc")
assert got_a.get("video", 0) > 0, "aiortc decoded no video from the str0m peer"
assert got_a.get("audio", 0) > 0, "aiortc received no audio from the str0m peer"
assert got_p.get("video", 0) > 0 and got_p.get("audio", 0) > 0, "the str0m peer received nothing from aiortc"
assert aiortc["error"] is None, f"aiortc peer error: {aiortc['error']}"
assert peer.get("corrupt", 0) == 0, "the str0m peer saw corrupt payloads"
PY
[ "$status" -eq 0 ] || show_failure "$logs/aiortc.log" "$logs/testpeer.log" "$logs/broadcast.log"
exit "$status"
