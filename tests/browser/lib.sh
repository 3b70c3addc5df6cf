# What the browser tests share: a network namespace (Chromium never offers loopback ICE
# candidates, so browser, server and emulator all run inside one, on a veth pair 10.77.0.1 /
# 10.77.0.2 whose addresses Chromium does use), the bundled web app, the binaries and a
# Firestore emulator with the project's rules loaded.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

# browser_setup NAME PROJECT: sets ns, in_ns, logs, artifacts, emulator; exports IN_NETNS.
browser_setup() {
  local name=$1
  project=$2
  ns="fsfu-$name-$$"
  logs="$FIRESFU_ROOT/target/test-logs/browser-$name"
  artifacts="$FIRESFU_ROOT/target/test-artifacts"
  mkdir -p "$logs" "$artifacts"
  trap 'stop_groups; stop_postgres; ip netns del "$ns" 2>/dev/null || true' EXIT
  make_netns "$ns"
  in_ns=(ip netns exec "$ns")
  export IN_NETNS="$ns"

  (cd "$FIRESFU_ROOT/web" && node build.mjs)
  # With the test builds' features, so that `cargo test`'s build is reused as it is.
  (cd "$FIRESFU_ROOT" && cargo build --quiet -p firesfu -p testpeer --bins --features firesfu/fault-injection)

  emulator="127.0.0.1:8081"
  start_rules_emulator "$ns"
}

# start_rules_emulator NS: a Firestore emulator at $emulator inside NS, with the project's rules
# loaded for $project (browsers write as signed-in users, so the rules apply to them).
start_rules_emulator() {
  local in=(ip netns exec "$1")
  start_group FIRESTORE "$logs/firestore-emulator.log" "${in[@]}" \
    gcloud emulators firestore start --host-port="$emulator"
  IN_NETNS="$1" wait_http "http://$emulator/" Ok 90
  local rules
  rules=$(python3 -c 'import json,sys; print(json.dumps({"rules":{"files":[{"name":"firestore.rules","content":open(sys.argv[1]).read()}]}}))' "$FIRESFU_ROOT/firestore.rules")
  "${in[@]}" curl -fsS -X PUT -H "Content-Type: application/json" \
    "http://$emulator/emulator/v1/projects/$project:securityRules" -d "$rules" >/dev/null
}

# start_app_sidecar NAME: PostgreSQL (started for NAME, with a fresh database firesfu_NAME) and
# the sidecar serving the web app at $sidecar (127.0.0.1:8090 in the namespace $ns).
start_app_sidecar() {
  local db="firesfu_$1"
  start_postgres "test-$1"
  "${in_ns[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
  "${in_ns[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
  sidecar="127.0.0.1:8090"
  start_group SIDECAR "$logs/sidecar.log" "${in_ns[@]}" env \
    GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
    DATABASE_URL="$FIRESFU_TEST_PG/$db" APP_PORT=8090 FIRESFU_WEB_ROOT=web/dist \
    RUST_LOG=info "$BIN"/firesfu sidecar
  wait_http "http://$sidecar/readyz" ready 60
}

# start_app_broadcast: one broadcast instance for the web app (BROADCAST, log broadcast.log,
# UDP 10.77.0.1:4443, HTTP 127.0.0.1:8082), verifying join tokens against the sidecar's JWKS.
# Variables of the caller's environment (FIRESFU_CAMERA_KEY, say) reach it.
start_app_broadcast() {
  start_group BROADCAST "$logs/broadcast.log" "${in_ns[@]}" env \
    GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
    FIRESFU_UDP_BIND=10.77.0.1:4443 APP_PORT=8082 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
    FIRESFU_JWKS_URL="http://$sidecar/.well-known/jwks.json" \
    RUST_LOG="${FIRESFU_TEST_RUST_LOG:-info,firesfu=debug}" "$BIN"/firesfu broadcast
  wait_http "http://127.0.0.1:8082/healthz" ok 30
}

# show_failure LOG...: the tail of each log, on stderr.
show_failure() {
  echo "browser test FAILED; logs in $logs" >&2
  tail -n 40 "$@" >&2 || true
}

# linked_setup NAME PROJECT: the servers' network namespace and the browser's, joined by a
# dual-stack veth pair (10.78.0.1/fd78::1 ↔ 10.78.0.2/fd78::2; see make_netns_link), the web
# bundle and the binaries, and a Firestore emulator at 10.78.0.1:8081 in the servers' namespace
# with the project's rules. Sets srv, cli, in_srv, in_cli, logs, emulator.
linked_setup() {
  local name=$1
  project=$2
  srv="fsfu-${name:0:4}s-$$"
  cli="fsfu-${name:0:4}c-$$"
  logs="$FIRESFU_ROOT/target/test-logs/$name"
  mkdir -p "$logs"
  trap 'stop_groups; stop_postgres; ip netns del "$srv" 2>/dev/null || true; ip netns del "$cli" 2>/dev/null || true' EXIT
  make_netns_link "$srv" "$cli"
  in_srv=(ip netns exec "$srv")
  in_cli=(ip netns exec "$cli")

  (cd "$FIRESFU_ROOT/web" && node build.mjs)
  (cd "$FIRESFU_ROOT" && cargo build --quiet -p firesfu -p testpeer --bins --features firesfu/fault-injection)

  emulator="10.78.0.1:8081"
  start_rules_emulator "$srv"
}
