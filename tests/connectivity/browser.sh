#!/usr/bin/env bash
# Reaching the server from the networks participants sit on, with real Chromium through the
# meeting web app, a real coturn and the sidecar's TURN credentials. Servers (Firestore
# emulator, PostgreSQL, sidecar, firesfu broadcast, coturn) run in one network namespace, the
# browser in another, joined by a dual-stack veth pair (10.78.0.1/fd78::1 ↔ 10.78.0.2/fd78::2).
# web/test/connectivity.mjs changes what nftables in the server namespace lets through from
# the browser's address, mid-call, and checks what the users get:
#   UDP blocked → ICE-TCP; UDP and TCP 4443 blocked → the browsers move to the second ICE-TCP
#   listener (the server follows their nomination); an explicit ICE restart mid-call; every
#   media port blocked → the web app restarts ICE by itself onto a TURN relay, and a fresh join
#   over it; forged and expired TURN credentials refused by coturn; IPv4 blocked → IPv6.
# The second listener is on 5443, not 443: Chromium opens no ICE-TCP connection to a port
# below 1024 of a private address (what the test network has), a guard against scanning LANs.
set -euo pipefail
source "$(dirname "$0")/../browser/lib.sh"
cd "$FIRESFU_ROOT"

artifacts="$FIRESFU_ROOT/target/test-artifacts/connectivity"
mkdir -p "$artifacts"
linked_setup connectivity demo-conn

IN_NETNS="$srv" start_postgres test-conn
"${in_srv[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "DROP DATABASE IF EXISTS firesfu_conn" >/dev/null
"${in_srv[@]}" psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE firesfu_conn" >/dev/null

# The TURN server, with the REST API credential scheme: the secret is shared with the sidecar
# only. Its relay addresses stay inside the server namespace (the "VPC").
turn_secret=$(head -c 24 /dev/urandom | base64)
start_group TURN "$logs/coturn.log" "${in_srv[@]}" turnserver -n \
  --listening-ip=10.78.0.1 --relay-ip=10.78.0.1 --listening-port=3478 \
  --min-port=49152 --max-port=49999 --realm=firesfu.test \
  --use-auth-secret --static-auth-secret="$turn_secret" \
  --no-tls --no-dtls --no-cli --fingerprint --no-multicast-peers \
  --log-file=stdout --simple-log --pidfile="$logs/coturn.pid"

sidecar="10.78.0.1:8090"
start_group SIDECAR "$logs/sidecar.log" "${in_srv[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  DATABASE_URL="$FIRESFU_TEST_PG/firesfu_conn" APP_PORT=8090 FIRESFU_SIDECAR_BIND_IP=10.78.0.1 \
  FIRESFU_WEB_ROOT=web/dist \
  FIRESFU_TURN_URLS="turn:10.78.0.1:3478?transport=udp,turn:10.78.0.1:3478?transport=tcp" \
  FIRESFU_TURN_SECRET="$turn_secret" FIRESFU_TURN_TTL_SECS=3600 \
  RUST_LOG=info "$BIN"/firesfu sidecar
IN_NETNS="$srv" wait_http "http://$sidecar/readyz" ready 60

# One instance, dual stack, ICE-TCP on the UDP port's number and on a second port.
start_group BROADCAST "$logs/broadcast.log" "${in_srv[@]}" env \
  GOOGLE_CLOUD_PROJECT="$project" FIRESTORE_EMULATOR_HOST="$emulator" \
  FIRESFU_UDP_BIND="[::]:4443" FIRESFU_ADVERTISE_IPS="10.78.0.1,fd78::1" \
  FIRESFU_ICE_TCP_EXTRA="[::]:5443" \
  FIRESFU_JWKS_URL="http://$sidecar/.well-known/jwks.json" \
  APP_PORT=8080 FIRESFU_HTTP_BIND_IP=127.0.0.1 \
  RUST_LOG="${FIRESFU_TEST_RUST_LOG:-info,firesfu=debug}" "$BIN"/firesfu broadcast
IN_NETNS="$srv" wait_http "http://127.0.0.1:8080/healthz" ok 30

status=0
"${in_cli[@]}" env FIRESFU_SERVER_NS="$srv" FIRESFU_EMULATOR="$emulator" FIRESFU_PROJECT="$project" \
  FIRESFU_TURN_SECRET="$turn_secret" \
  node web/test/connectivity.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/connectivity.json" 2>"$logs/connectivity.log" || status=$?
cat "$logs/connectivity.json"
"${in_srv[@]}" curl -fsS http://127.0.0.1:8080/stats >"$logs/stats.json" || true
echo "server: $(cat "$logs/stats.json")"
if [ "$status" -ne 0 ]; then
  echo "connectivity test FAILED; logs in $logs" >&2
  tail -n 60 "$logs/connectivity.log" "$logs/broadcast.log" "$logs/coturn.log" "$logs/sidecar.log" >&2 || true
fi
exit "$status"
