#!/usr/bin/env bash
# Compares two firesfu binaries on the forwarding benchmark's load (1 str0m publisher → 20
# str0m subscribers, server on core 0, emulator and clients on core 1), alternating them for
# ROUNDS rounds so that both see the same host. Usage:
#   bash scripts/bench-forward-compare.sh OLD_FIRESFU NEW_FIRESFU
# (build each with `cargo build --release -p firesfu` at its commit and copy it aside; the
# bench client is this checkout's). Results: target/bench-compare/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"
[ $# -eq 2 ] || { echo "usage: $0 OLD_FIRESFU NEW_FIRESFU" >&2; exit 2; }
bins=("$(realpath "$1")" "$(realpath "$2")")
rounds=${ROUNDS:-2}
out="$FIRESFU_ROOT/target/bench-compare"
rm -rf "$out"; mkdir -p "$out"
cargo build --release -p bench --bin bench

ns="fsfu-cmp-$$"
cleanup() { stop_groups; ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
make_netns "$ns"
in_ns=(ip netns exec "$ns")
export IN_NETNS="$ns"
project=demo-bench
emulator=127.0.0.1:8081
start_group FIRESTORE "$out/firestore.log" "${in_ns[@]}" taskset -c 1 \
  gcloud emulators firestore start --host-port="$emulator"
wait_http "http://$emulator/" Ok 90
taskset -c 0 "$RELEASE_BIN/bench" floor --subscribers 20 2>"$out/floor.json"
for round in $(seq "$rounds"); do
  for i in 0 1; do
    which=$([ "$i" = 0 ] && echo old || echo new)
    start_group BROADCAST "$out/$which-$round.log" "${in_ns[@]}" taskset -c 0 env \
      GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
      FIRESFU_UDP_BIND=10.77.0.1:4443 FIRESFU_DEV_NO_AUTH=true APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
      "${bins[$i]}" broadcast
    wait_http "http://127.0.0.1:8080/healthz" ok 30
    pid=$(pgrep -g "$PID_BROADCAST" -x "$(basename "${bins[$i]}" | cut -c1-15)")
    "${in_ns[@]}" taskset -c 1 "$RELEASE_BIN/bench" forward-firesfu --emulator "$emulator" \
      --project "$project" --stats-url http://127.0.0.1:8080/stats --pid "$pid" \
      --subscribers 20 --seconds 10 --bind-ip 10.77.0.2 2>"$out/$which-$round.json"
    kill -TERM -- "-$PID_BROADCAST"
    for _ in $(seq 50); do kill -0 -- "-$PID_BROADCAST" 2>/dev/null || break; sleep 0.1; done
    echo "$which, round $round: $(tail -1 "$out/$which-$round.json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("%.2f µs per forwarded packet, %d forwarded" % (d["usPerForwardedPacket"], d["forwarded"]))')"
  done
done
echo "floor: $(tail -1 "$out/floor.json")"
