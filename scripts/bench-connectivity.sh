#!/usr/bin/env bash
# Part of `make bench`: join time with real Chromium over each path a participant may get —
# direct UDP, ICE-TCP (UDP blocked), and a TURN relay (UDP and TCP to the server blocked) —
# from offer written to the first video frame decoded, ≥ 20 joins each. Servers (Firestore
# emulator, firesfu, coturn, a str0m peer publishing real VP8) run in one network namespace,
# Chromium in another; nftables in the server's namespace decides which paths exist.
# Results: target/bench/connectivity.json and the summary on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

out="$FIRESFU_ROOT/target/bench"
mkdir -p "$out/logs"
joins=${BENCH_CONNECT_JOINS:-20}
srv="fsfu-bsrv-$$"
cli="fsfu-bcli-$$"
cleanup() { stop_groups; ip netns del "$srv" 2>/dev/null || true; ip netns del "$cli" 2>/dev/null || true; }
trap cleanup EXIT
make_netns_link "$srv" "$cli"
in_srv=(ip netns exec "$srv")
in_cli=(ip netns exec "$cli")
cargo build --quiet --release -p firesfu -p testpeer --bins
(cd web && node build.mjs)

project=demo-bench-connect
emulator=10.78.0.1:8081
start_group FIRESTORE "$out/logs/connect-firestore.log" "${in_srv[@]}" taskset -c 1 \
  gcloud emulators firestore start --host-port="$emulator"
IN_NETNS="$srv" wait_http "http://$emulator/" Ok 90

secret=$(head -c 24 /dev/urandom | base64)
start_group TURN "$out/logs/connect-coturn.log" "${in_srv[@]}" taskset -c 1 turnserver -n \
  --listening-ip=10.78.0.1 --relay-ip=10.78.0.1 --listening-port=3478 --min-port=49152 --max-port=49999 \
  --realm=firesfu.test --use-auth-secret --static-auth-secret="$secret" \
  --no-tls --no-dtls --no-cli --fingerprint --log-file=stdout --simple-log
start_group BROADCAST "$out/logs/connect-firesfu.log" "${in_srv[@]}" taskset -c 0 env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND="[::]:4443" FIRESFU_ADVERTISE_IPS="10.78.0.1" FIRESFU_DEV_NO_AUTH=true \
  APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 "$RELEASE_BIN"/firesfu broadcast
IN_NETNS="$srv" wait_http "http://127.0.0.1:8080/healthz" ok 30
# The room's publisher: real VP8, so that Chromium has frames to decode.
setsid "${in_srv[@]}" taskset -c 1 "$RELEASE_BIN"/testpeer --emulator "$emulator" --project "$project" \
  --room connect-bench --create-room --name host --bind-ip 10.78.0.1 --ivf tests/data/clip.ivf \
  --recv-audio 1 --recv-video 1 --no-follow >"$out/logs/connect-host.json" 2>"$out/logs/connect-host.log" &
STARTED_GROUPS+=("$!")
sleep 2

# TURN credentials as the sidecar mints them (docs/signalling.md, "Joining").
ice_servers=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
user = f"{int(time.time()) + 3600}:bench"
cred = base64.b64encode(hmac.new(sys.argv[1].encode(), user.encode(), hashlib.sha1).digest()).decode()
print(json.dumps([{"urls": ["turn:10.78.0.1:3478?transport=udp", "turn:10.78.0.1:3478?transport=tcp"],
                   "username": user, "credential": cred}]))
PY
)

network() {
  "${in_srv[@]}" nft delete table inet fsfu_bench 2>/dev/null || true
  {
    echo "table inet fsfu_bench {"
    echo "  chain input {"
    echo "    type filter hook input priority 0; policy accept;"
    for r in "$@"; do echo "    ip saddr 10.78.0.2 $r drop"; done
    echo "  }"
    echo "}"
  } | "${in_srv[@]}" nft -f -
}

for mode in udp tcp relay; do
  case $mode in
    udp) network ;;
    tcp) network "udp dport 4443" "udp dport 3478" "tcp dport 3478" ;;
    relay) network "udp dport 4443" "tcp dport 4443" ;;
  esac
  echo "== join time over $mode ($joins joins)"
  "${in_cli[@]}" taskset -c 1 node web/test/join-bench.mjs "$project" "$emulator" connect-bench "$joins" "$ice_servers" \
    >"$out/connect-$mode.json" 2>"$out/logs/connect-$mode.log"
done

python3 - "$out" <<'PY' | tee "$out/connectivity.md"
import json, sys
out = sys.argv[1]
def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]
summary = {}
print("| path | offer written → first frame decoded, ms | answer applied, ms | paths taken |\n|---|---|---|---|")
for mode in ["udp", "tcp", "relay"]:
    r = json.load(open(f"{out}/connect-{mode}.json"))
    v, a = r["firstFrame"], r["answer"]
    paths = {p: r["paths"].count(p) for p in sorted(set(r["paths"]))}
    summary[mode] = {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95), "max": max(v), "paths": paths}
    print(f"| {mode} (n={len(v)}) | p50 {pct(v, 50):.0f}, p95 {pct(v, 95):.0f}, max {max(v):.0f} | p50 {pct(a, 50):.0f} | {paths} |")
json.dump(summary, open(f"{out}/connectivity.json", "w"), indent=1)
PY
