#!/usr/bin/env bash
# `make bench`: join latency over the Firestore emulator, and CPU per forwarded packet for
# firesfu and Janus (same str0m clients, same load, server pinned to core 0, clients to core 1),
# next to the raw SRTP+UDP floor measured in the same run. Results: target/bench/, summarised
# on stdout; docs/benchmarks.md records them with this command.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

out="$FIRESFU_ROOT/target/bench"
rm -rf "$out"; mkdir -p "$out/logs"
subscribers=${BENCH_SUBSCRIBERS:-20}
seconds=${BENCH_SECONDS:-10}
joins=${BENCH_JOINS:-60}

bash scripts/deps.sh
command -v janus >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus >/dev/null; }
cargo build --release -p firesfu -p testpeer -p bench --bins
bench="$RELEASE_BIN/bench"

ns="fsfu-bench-$$"
cleanup() { stop_groups; stop_postgres; ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
make_netns "$ns"
in_ns=(ip netns exec "$ns")
export IN_NETNS="$ns"

echo "== floor: SRTP + UDP per forwarded packet (core 0)"
taskset -c 0 "$bench" floor --subscribers "$subscribers" 2>"$out/floor.json"

echo "== firesfu (core 0), Firestore emulator and clients (core 1)"
project=demo-bench
emulator=127.0.0.1:8081
start_group FIRESTORE "$out/logs/firestore.log" "${in_ns[@]}" taskset -c 1 \
  gcloud emulators firestore start --host-port="$emulator"
wait_http "http://$emulator/" Ok 90
start_group BROADCAST "$out/logs/firesfu.log" "${in_ns[@]}" taskset -c 0 env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND=10.77.0.1:4443 FIRESFU_DEV_NO_AUTH=true APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  "$RELEASE_BIN"/firesfu broadcast
wait_http "http://127.0.0.1:8080/healthz" ok 30
firesfu_pid=$(pgrep -g "$PID_BROADCAST" -x firesfu)

"${in_ns[@]}" taskset -c 1 "$bench" join --emulator "$emulator" --project "$project" \
  --joins "$joins" --bind-ip 10.77.0.2 2>"$out/join.json"
# The same with a real browser: Chromium joins a room where a str0m peer publishes.
setsid "${in_ns[@]}" taskset -c 1 "$RELEASE_BIN"/testpeer --emulator "$emulator" --project "$project" \
  --room chrome-bench --create-room --name host --bind-ip 10.77.0.2 --ivf tests/data/clip.ivf \
  --recv-audio 1 --recv-video 1 --no-follow >"$out/logs/chrome-host.json" 2>"$out/logs/chrome-host.log" &
STARTED_GROUPS+=("$!")
sleep 2
(cd web && node build.mjs)
"${in_ns[@]}" taskset -c 1 node web/test/join-bench.mjs "$project" "$emulator" chrome-bench "$joins" \
  >"$out/chromium-join.json" 2>"$out/logs/chromium-join.log"

"${in_ns[@]}" taskset -c 1 "$bench" forward-firesfu --emulator "$emulator" --project "$project" \
  --stats-url http://127.0.0.1:8080/stats --pid "$firesfu_pid" \
  --subscribers "$subscribers" --seconds "$seconds" --bind-ip 10.77.0.2 2>"$out/firesfu.json"
# The same load with every client on ICE-TCP (RFC 4571 frames through the TCP tasks).
"${in_ns[@]}" taskset -c 1 "$bench" forward-firesfu --emulator "$emulator" --project "$project" \
  --stats-url http://127.0.0.1:8080/stats --pid "$firesfu_pid" --tcp \
  --subscribers "$subscribers" --seconds "$seconds" --bind-ip 10.77.0.2 2>"$out/firesfu-tcp.json"
kill -TERM -- "-$PID_BROADCAST"

echo "== sidecar (core 0) on PostgreSQL 15 (core 1)"
start_postgres bench
"${in_ns[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE bench" >/dev/null
start_group SIDECAR "$out/logs/sidecar.log" "${in_ns[@]}" taskset -c 0 env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" DATABASE_URL="$FIRESFU_TEST_PG/bench" \
  APP_PORT=8090 FIRESFU_SIDECAR_BIND_IP=127.0.0.1 "$RELEASE_BIN"/firesfu sidecar
wait_http "http://127.0.0.1:8090/healthz" ok 30
"${in_ns[@]}" taskset -c 1 "$bench" api --url http://127.0.0.1:8090 --concurrency 50 --seconds "$seconds" 2>"$out/api.json"
kill -TERM -- "-$PID_SIDECAR"

echo "== Janus $(janus --version 2>/dev/null | head -1 | awk '{print $3, $4}') videoroom (core 0)"
conf="$out/janus"
mkdir -p "$conf"
plugins=/usr/lib/x86_64-linux-gnu/janus
cat >"$conf/janus.jcfg" <<JCFG
general: {
  configs_folder = "$conf"
  plugins_folder = "$plugins/plugins"
  transports_folder = "$plugins/transports"
  events_folder = "$plugins/events"
  loggers_folder = "$plugins/loggers"
  debug_level = 2
}
media: { }
nat: {
  ice_lite = true
  ice_enforce_list = "veth-a"
}
plugins: {
  disable = "libjanus_audiobridge.so,libjanus_echotest.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_nosip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so,libjanus_lua.so,libjanus_duktape.so"
}
transports: {
  disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}
events: { broadcast = false }
loggers: { disable = "libjanus_jsonlog.so" }
JCFG
cat >"$conf/janus.transport.http.jcfg" <<JCFG
general: { json = "plain", base_path = "/janus", http = true, port = 8088, ip = "127.0.0.1" }
admin: { admin_http = false }
JCFG
echo 'general: { }' >"$conf/janus.plugin.videoroom.jcfg"
start_group JANUS "$out/logs/janus.log" "${in_ns[@]}" taskset -c 0 janus --configs-folder="$conf"
wait_http "http://127.0.0.1:8088/janus/info" janus 30
"${in_ns[@]}" taskset -c 1 "$bench" forward-janus --url http://127.0.0.1:8088/janus --pgid "$PID_JANUS" \
  --subscribers "$subscribers" --seconds "$seconds" --bind-ip 10.77.0.2 2>"$out/janus.json"

echo "== fleet: failover after kill -9 and room placement (Firestore + Pub/Sub emulators, loopback)"
# On loopback, outside the namespace (str0m peers use loopback candidates).
IN_NETNS= start_firestore_emulator "$out/logs"
IN_NETNS= start_pubsub_emulator "$out/logs" demo-bench
BENCH_FAILOVERS=${BENCH_FAILOVERS:-10} cargo test --quiet --test fleet fleet_benchmark -- --ignored --nocapture \
  2>"$out/logs/fleet.log" | grep '^FLEET-BENCH ' | sed 's/^FLEET-BENCH //' >"$out/fleet.jsonl"

echo "== IP cameras: CPU per camera stream next to a person's stream (release build, loopback)"
FIRESFU_TEST_BIN="$RELEASE_BIN/firesfu" FIRESFU_TEST_LOG=info \
  cargo test --quiet --test cameras camera_benchmark -- --ignored --nocapture \
  2>"$out/logs/cameras.log" | grep '^CAMERA-BENCH ' | sed 's/^CAMERA-BENCH //' >"$out/cameras.json"

echo "== WHIP: POST -> 201 and POST -> connected (str0m publisher, release build)"
FIRESFU_TEST_BIN="$RELEASE_BIN/firesfu" FIRESFU_TEST_LOG=info \
  cargo test --quiet --test whip whip_benchmark -- --ignored --nocapture \
  2>"$out/logs/whip.log" | grep '^WHIP-BENCH ' | sed 's/^WHIP-BENCH //' >"$out/whip.json"

echo "== webhooks: event -> delivered, throughput with a slow receiver (release sidecar)"
FIRESFU_TEST_BIN="$RELEASE_BIN/firesfu" FIRESFU_TEST_LOG=info \
  cargo test --quiet --test webhooks webhook_benchmark -- --ignored --nocapture \
  2>"$out/logs/webhooks.log" | grep '^WEBHOOK-BENCH ' | sed 's/^WEBHOOK-BENCH //' >"$out/webhooks.json"

echo "== join time by network path (Chromium: UDP, ICE-TCP, TURN relay)"
bash scripts/bench-connectivity.sh

echo "== summary"
python3 - "$out" "$subscribers" <<'PY' | tee "$out/summary.md"
import json, sys
out, subs = sys.argv[1], sys.argv[2]
floor = {r["profile"]: r["usPerForwardedPacket"] for r in json.load(open(f"{out}/floor.json"))}
fires = json.load(open(f"{out}/firesfu.json"))
fires_tcp = json.load(open(f"{out}/firesfu-tcp.json"))
janus = json.load(open(f"{out}/janus.json"))
join = json.load(open(f"{out}/join.json"))
api = json.load(open(f"{out}/api.json"))
chrome = json.load(open(f"{out}/chromium-join.json"))
def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]
gcm = floor["AEAD_AES_128_GCM"]
print(f"| metric | value |\n|---|---|")
for m in join:
    print(f"| str0m client: {m['metric']} (n={m['n']}) | p50 {m['p50']:.0f}, p95 {m['p95']:.0f}, max {m['max']:.0f} |")
# A join whose answer took over 1.4 s hit a stale emulator listener and re-subscribed.
stalled = {i for i, a in enumerate(chrome["answer"]) if a > 1400}
for key, label in [("answer", "offer written -> answer applied"), ("firstMedia", "offer written -> first RTP of the room's media")]:
    v = chrome[key]
    fine = [x for i, x in enumerate(v) if i not in stalled]
    print(f"| Chromium: {label}, ms (n={len(v)}) | p50 {pct(v, 50):.0f}, p95 {pct(v, 95):.0f}, max {max(v):.0f} |")
    print(f"| … without the {len(stalled)} joins whose emulator listener went stale (n={len(fine)}) | p50 {pct(fine, 50):.0f}, p95 {pct(fine, 95):.0f}, max {max(fine):.0f} |")
l = api["login"]
print(f"| sidecar login (Argon2id m=19 MiB, t=2, p=1), ms (n={l['n']}) | p50 {l['p50']:.0f}, p95 {l['p95']:.0f} |")
r = api["rooms"]
print(f"| sidecar GET /v1/rooms (20 rooms), {r['concurrency']} concurrent clients | {r['requestsPerSecond']:.0f} requests/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['errors']} errors |")
print(f"| firesfu CPU per forwarded packet, 1 → {subs} | {fires['usPerForwardedPacket']:.2f} µs ({fires['forwarded']/fires['seconds']:.0f} packets/s forwarded) |")
print(f"| firesfu over ICE-TCP, same load | {fires_tcp['usPerForwardedPacket']:.2f} µs ({fires_tcp['forwarded']/fires_tcp['seconds']:.0f} packets/s forwarded, {fires_tcp['extra']['tcpSendDropped']} dropped on full queues) |")
print(f"| firesfu ICE-TCP ÷ UDP | {fires_tcp['usPerForwardedPacket']/fires['usPerForwardedPacket']:.2f} |")
print(f"| Janus CPU per forwarded packet, same load | {janus['usPerForwardedPacket']:.2f} µs ({janus['forwarded']/janus['seconds']:.0f} packets/s forwarded) |")
print(f"| SRTP+UDP floor (GCM / AES-CM-SHA1) | {gcm:.2f} / {floor['AES_CM_128_HMAC_SHA1_80']:.2f} µs |")
print(f"| firesfu ÷ Janus | {fires['usPerForwardedPacket']/janus['usPerForwardedPacket']:.2f} |")
print(f"| firesfu ÷ floor (GCM) | {fires['usPerForwardedPacket']/gcm:.2f} |")
print(f"| Janus ÷ floor (GCM) | {janus['usPerForwardedPacket']/gcm:.2f} |")
for line in open(f"{out}/fleet.jsonl"):
    f = json.loads(line)
    print(f"| failover kill -9 → media again for all, {f['report_ms']/1000:.0f} s reports, {f['stale_ms']/1000:.0f} s staleness, ms (n={f['runs']}) | p50 {f['failover_p50_ms']}, p95 {f['failover_p95_ms']}, max {max(f['failover_ms'])} |")
    print(f"| room created → assignment written, ms (n={f['runs']}) | p50 {f['placement_p50_ms']}, p95 {f['placement_p95_ms']} |")
c = json.load(open(f"{out}/cameras.json"))
print(f"| firesfu CPU per camera stream (RTSP pull, H.264 repacketized + PCMU, 600 kbit/s, 1 viewer; {c['rooms']} cameras) | {c['cpuPctPerCameraStream']:.2f} % of a core |")
print(f"| … per person's stream of about the same rate (VP8 600 kbit/s + Opus, 1 viewer; {c['rooms']} rooms) | {c['cpuPctPerPersonStream']:.2f} % of a core |")
print(f"| camera stream ÷ person's stream | {c['cameraOverPerson']:.2f} |")
w = json.load(open(f"{out}/whip.json"))
print(f"| WHIP POST -> 201 (answer from the broadcast via the session document), ms (n={w['n']}) | p50 {w['postTo201P50']:.0f}, p95 {w['postTo201P95']:.0f}, max {w['postTo201Max']:.0f} |")
print(f"| WHIP POST -> publisher connected (ICE + DTLS), ms (n={w['n']}) | p50 {w['postToConnectedP50']:.0f}, p95 {w['postToConnectedP95']:.0f} |")
h = json.load(open(f"{out}/webhooks.json"))
print(f"| webhook: event published -> delivered (Pub/Sub, PostgreSQL, signed POST), ms ({h['events']} events, {h['rooms']} rooms) | p50 {h['eventToDeliveredP50Ms']:.0f}, p95 {h['eventToDeliveredP95Ms']:.0f}, max {h['eventToDeliveredMaxMs']:.0f} |")
print(f"| webhook throughput to one endpoint while a 200 ms endpoint is registered | {h['quickPerSecond']:.0f} deliveries/s (slow one: {h['slowDeliveredMeanwhile']} meanwhile) |")
PY
