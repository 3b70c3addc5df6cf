# Shared helpers for the project's scripts: free ports, process groups, waiting.
# Everything a script starts runs in its own process group (setsid) so that stopping it also
# stops its children (gcloud starts a java child that would otherwise keep the port).

FIRESFU_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build outputs live outside the checkout, shared by every clone on this machine: a fresh clone
# (CI's, say) reuses the dependencies already compiled here. Set CARGO_TARGET_DIR to override.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/firesfu-target}"
BIN="$CARGO_TARGET_DIR/debug"
RELEASE_BIN="$CARGO_TARGET_DIR/release"
STARTED_GROUPS=()

# prune_build_outputs: build outputs grow with every clone (CI's clones build their own copies of
# the workspace's crates), feature set and session. When the disk holding them has less than
# FIRESFU_MIN_FREE_GIB (25) free, the workspace's binaries and incremental caches that no build
# touched for 3 hours go (dependencies stay: they are rebuilt only when they change).
prune_build_outputs() {
  local min=${FIRESFU_MIN_FREE_GIB:-25} free dir
  mkdir -p "$CARGO_TARGET_DIR"
  free=$(df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print int($4 / 1048576)}')
  [ "$free" -lt "$min" ] || return 0
  echo "== prune: $free GiB free under $CARGO_TARGET_DIR (< $min): removing stale build outputs"
  for dir in "$CARGO_TARGET_DIR" "${CARGO_TARGET_DIR%/}-fuzz"; do
    [ -d "$dir" ] || continue
    find "$dir" -mindepth 3 -maxdepth 3 -path '*/incremental/*' -mmin +180 -exec rm -rf {} + 2>/dev/null || true
    find "$dir" -mindepth 3 -maxdepth 4 -path '*/deps/*' -type f -mmin +180 \
      \( -name 'libfiresfu-*' -o \( -perm -u+x ! -name '*.so' \) \) -delete 2>/dev/null || true
  done
  free=$(df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print int($4 / 1048576)}')
  echo "   now $free GiB free"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_group NAME LOGFILE CMD... : starts CMD in a new process group; prints nothing.
start_group() {
  local name=$1 log=$2; shift 2
  setsid "$@" >"$log" 2>&1 &
  local pid=$!
  STARTED_GROUPS+=("$pid")
  eval "PID_${name}=$pid"
}

stop_groups() {
  local pid
  for pid in "${STARTED_GROUPS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_GROUPS[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  STARTED_GROUPS=()
}

# wait_http URL TEXT SECONDS: waits until GET URL returns a body containing TEXT.
# With IN_NETNS=name set, the request is made inside that network namespace.
wait_http() {
  local url=$1 text=$2 secs=$3
  local run=()
  [ -n "${IN_NETNS:-}" ] && run=(ip netns exec "$IN_NETNS")
  for _ in $(seq $((secs * 5))); do
    if "${run[@]}" curl -fsS --max-time 1 "$url" 2>/dev/null | grep -q "$text"; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# start_firestore_emulator LOGDIR [HOST]: exports FIRESTORE_EMULATOR_HOST.
start_firestore_emulator() {
  local logdir=$1 ip=${2:-127.0.0.1} port
  port=$(free_port)
  start_group FIRESTORE "$logdir/firestore-emulator.log" \
    gcloud emulators firestore start --host-port="$ip:$port"
  wait_http "http://$ip:$port/" Ok 90
  export FIRESTORE_EMULATOR_HOST="$ip:$port"
}

# start_pubsub_emulator LOGDIR PROJECT [HOST]: exports PUBSUB_EMULATOR_HOST.
start_pubsub_emulator() {
  local logdir=$1 project=$2 ip=${3:-127.0.0.1} port
  port=$(free_port)
  start_group PUBSUB "$logdir/pubsub-emulator.log" \
    gcloud beta emulators pubsub start --host-port="$ip:$port" --project="$project"
  wait_http "http://$ip:$port/" Ok 90
  export PUBSUB_EMULATOR_HOST="$ip:$port"
}

# make_netns NAME: a network namespace with lo and a veth pair (10.77.0.1 on veth-a, 10.77.0.2
# on veth-b) whose addresses browsers and libnice use for ICE (they refuse loopback).
make_netns() {
  local ns=$1
  ip netns add "$ns"
  local in_ns=(ip netns exec "$ns")
  "${in_ns[@]}" ip link set lo up
  "${in_ns[@]}" ip link add veth-a type veth peer name veth-b
  "${in_ns[@]}" ip addr add 10.77.0.1/24 dev veth-a
  "${in_ns[@]}" ip addr add 10.77.0.2/24 dev veth-b
  "${in_ns[@]}" ip link set veth-a up
  "${in_ns[@]}" ip link set veth-b up
  # Without accept_local, STUN between two local addresses is dropped as martian.
  local conf
  for conf in all default veth-a veth-b; do
    "${in_ns[@]}" sysctl -qw "net.ipv4.conf.$conf.accept_local=1"
  done
}

# make_netns_link SERVER CLIENT: two network namespaces joined by a veth pair, dual stack:
# the server side has 10.78.0.1 and fd78::1, the client side 10.78.0.2 and fd78::2. Servers run
# in SERVER, browsers in CLIENT (so that nftables in SERVER can block a path for the client
# only: traffic between servers inside SERVER stays local).
make_netns_link() {
  local srv=$1 cli=$2 ns
  ip netns add "$srv"
  ip netns add "$cli"
  for ns in "$srv" "$cli"; do
    ip netns exec "$ns" ip link set lo up
    # No duplicate address detection: the IPv6 addresses are usable at once.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  ip link add veth-srv netns "$srv" type veth peer name veth-cli netns "$cli"
  ip netns exec "$srv" ip addr add 10.78.0.1/24 dev veth-srv
  ip netns exec "$srv" ip addr add fd78::1/64 dev veth-srv nodad
  ip netns exec "$cli" ip addr add 10.78.0.2/24 dev veth-cli
  ip netns exec "$cli" ip addr add fd78::2/64 dev veth-cli nodad
  ip netns exec "$srv" ip link set veth-srv up
  ip netns exec "$cli" ip link set veth-cli up
}

# pg_dir NAME: where this checkout's PostgreSQL cluster NAME lives. Not inside the checkout:
# PostgreSQL runs as `postgres`, which cannot enter a clone under a private directory (/root is
# mode 700, and so is every `mktemp -d`). /var/tmp is open to everyone and survives reboots.
pg_dir() {
  local base="${FIRESFU_PG_ROOT:-/var/tmp/firesfu-pg}"
  local tag
  tag=$(printf '%s' "$FIRESFU_ROOT" | sha1sum | cut -c1-10)
  mkdir -p "$base"
  chmod 1777 "$base" 2>/dev/null || true
  echo "$base/$tag-$1"
}

# start_postgres NAME: a throwaway PostgreSQL 15 cluster (initdb once) in `pg_dir NAME`,
# listening on a free loopback port, trust authentication for role `firesfu`. Exports
# FIRESFU_TEST_PG (a URL without database name). PostgreSQL refuses to run as root: it runs as
# `postgres`.
PG_DIRS=()
start_postgres() {
  local dir port
  dir=$(pg_dir "$1")
  local bin=/usr/lib/postgresql/15/bin
  mkdir -p "$dir"
  chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    if ! runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U firesfu --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1; then
      echo "initdb failed (log: $dir/initdb.log):" >&2
      cat "$dir/initdb.log" >&2
      return 1
    fi
  fi
  # A cluster left running by an interrupted run (or in another namespace) is stopped first.
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -f "$dir/data/postmaster.pid"
  port=$(free_port)
  local run=()
  [ -n "${IN_NETNS:-}" ] && run=(ip netns exec "$IN_NETNS")
  "${run[@]}" runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  PG_DIRS+=("$dir")
  export FIRESFU_TEST_PG="postgres://firesfu@127.0.0.1:$port"
}

stop_postgres() {
  local dir
  for dir in "${PG_DIRS[@]}"; do
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  done
  PG_DIRS=()
}
