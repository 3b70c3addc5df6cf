#!/usr/bin/env bash
# Builds the firesfu runtime image (Dockerfile, target runtime-prebuilt) with Debian's podman
# from a base made here (debootstrap --variant=minbase bookworm, imported with podman import,
# cached under target/deploy/image and reused), the host-built binary and web/dist; exports the
# image's filesystem and runs its entrypoint in it, as the image's user, on a read-only root:
#   - `firesfu --version` and `firesfu <cmd> --help` for every subcommand;
#   - `firesfu sidecar` (PostgreSQL + the Firestore emulator) serving /healthz, /readyz and the
#     web app's files from the image's own copy (FIRESFU_WEB_ROOT from the image's config);
#   - `firesfu broadcast` answering /healthz.
# `podman run` is refused on these machines (crun cannot set rlimits in this sandbox): the
# entrypoint runs with chroot inside private mount and PID namespaces instead, so every mount
# and process it needs disappears with it, also on failure. Prints the image size and timings.
#
# Needs root. Uses FIRESTORE_EMULATOR_HOST and FIRESFU_TEST_PG when set (make test), else starts
# its own. The binary: ${CARGO_TARGET_DIR:-/var/tmp/firesfu-target}/debug/firesfu (or FIRESFU_BIN).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$FIRESFU_ROOT"

FIRESFU=${FIRESFU_BIN:-$BIN/firesfu}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Bump when the base's recipe changes (it is rebuilt only when this tag is missing).
BASE_TAG=bookworm-minbase-v1
BASE_IMAGE=localhost/firesfu-test-base:$BASE_TAG
IMAGE=localhost/firesfu:image-test
work="$FIRESFU_ROOT/target/deploy/image"
logs="$FIRESFU_ROOT/target/test-logs/image"
rootfs="$work/rootfs"
ctx="$work/context"
mkdir -p "$work" "$logs"

[ "$(id -u)" -eq 0 ] || { echo "image.sh: needs root (podman with vfs storage, chroot)" >&2; exit 1; }
[ -x "$FIRESFU" ] || { echo "image.sh: no firesfu binary at $FIRESFU: build it first (cargo build)" >&2; exit 1; }

t_all=$(date +%s.%N)
t_step=$t_all
lap() {  # lap MESSAGE: prints MESSAGE with the time since the previous lap
  local now
  now=$(date +%s.%N)
  printf '   %-58s %6.1f s\n' "$1" "$(echo "$now - $t_step" | bc)"
  t_step=$now
}

pm() {  # podman with this test's own storage (vfs: no overlay or fuse needed)
  podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs \
    --cgroup-manager cgroupfs --events-backend file "$@"
}

db=""
cid=""
cleanup() {
  local rc=$?
  stop_groups
  [ -n "$cid" ] && pm rm -f "$cid" >/dev/null 2>&1 || true
  if [ -n "$db" ]; then psql "$FIRESFU_TEST_PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; fi
  stop_postgres
  # The namespaces take their mounts with them; a leftover would be a bug, but never leave one.
  findmnt -rn -o TARGET | grep -F "$rootfs" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  # The base image stays cached; the built image, its context and the exported tree go.
  pm rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$ctx" "$rootfs"
  [ $rc -eq 0 ] || echo "image.sh: FAILED (logs in $logs)" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== image: tools"
missing=()
for p in podman debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
lap "podman $(podman --version | awk '{print $3}'), debootstrap"

echo "== image: base ($BASE_IMAGE)"
if pm image exists "$BASE_IMAGE"; then
  lap "cached in target/deploy/image/storage"
else
  tarball="$work/$BASE_TAG.tar"
  if [ ! -s "$tarball" ]; then
    tmp="$work/debootstrap"
    rm -rf "$tmp"
    # libssl3: the binary links OpenSSL (distroless/cc has it too); ca-certificates: TLS to Google.
    debootstrap --variant=minbase --include=libssl3,ca-certificates bookworm "$tmp" "$MIRROR" \
      >"$logs/debootstrap.log" 2>&1 || { tail -20 "$logs/debootstrap.log" >&2; exit 1; }
    # Like distroless: a "nonroot" user 65532 with a home, nothing cached.
    echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >>"$tmp/etc/passwd"
    echo "nonroot:x:65532:" >>"$tmp/etc/group"
    install -d -o 65532 -g 65532 -m 700 "$tmp/home/nonroot"
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*
    tar -C "$tmp" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$tmp"
    lap "debootstrap --variant=minbase bookworm ($(du -m "$tarball" | cut -f1) MiB)"
  fi
  pm import --quiet "$tarball" "$BASE_IMAGE" >/dev/null 2>"$logs/import.log" || { cat "$logs/import.log" >&2; exit 1; }
  lap "podman import"
fi

echo "== image: build (Dockerfile --target runtime-prebuilt)"
rm -rf "$ctx"
mkdir -p "$ctx/prebuilt"
if [ ! -f web/dist/index.html ]; then
  [ -d web/node_modules ] || (cd web && npm ci --no-audit --no-fund --silent)
  (cd web && node build.mjs)
fi
# Debug info stripped: the image carries what a release build would (line tables, symbols
# kept), and the disk is spared the test build's full copy twice over.
objcopy --strip-debug "$FIRESFU" "$ctx/prebuilt/firesfu"
cp -r web/dist "$ctx/prebuilt/web"
rm -f "$ctx"/prebuilt/web/smoke.*   # as the Dockerfile's web stage does
lap "context: binary $(du -m "$ctx/prebuilt/firesfu" | cut -f1) MiB, web/dist $(du -k "$ctx/prebuilt/web" | tail -1 | cut -f1) KiB"
# --layers=false: one commit at the end (vfs copies the whole tree for every layer).
pm build --layers=false --pull=never --target runtime-prebuilt \
  --build-arg RUNTIME_IMAGE="$BASE_IMAGE" --build-arg BUILDER_IMAGE="$BASE_IMAGE" \
  --build-arg NODE_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile "$ctx" >"$logs/build.log" 2>&1 \
  || { tail -30 "$logs/build.log" >&2; exit 1; }
pm image prune -f >/dev/null   # the previous run's image (vfs keeps whole copies)
lap "podman build"

size=$(pm image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(pm image inspect --format '{{.Size}}' "$BASE_IMAGE")
user=$(pm image inspect --format '{{.Config.User}}' "$IMAGE")
entrypoint=$(pm image inspect --format '{{range .Config.Entrypoint}}{{.}} {{end}}' "$IMAGE")
mapfile -t image_env < <(pm image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
echo "   image $IMAGE: $((size / 1048576)) MiB = base $((base_size / 1048576)) MiB + firesfu layer $(((size - base_size) / 1048576)) MiB"
echo "   user $user, entrypoint [${entrypoint% }], env: ${image_env[*]}"
[ "$user" = "65532:65532" ] || { echo "the image must run as 65532:65532, not '$user'" >&2; exit 1; }

echo "== image: export the image's filesystem"
cid=$(pm create "$IMAGE")
rm -rf "$rootfs"
mkdir -p "$rootfs"
pm export "$cid" | tar -C "$rootfs" --numeric-owner -xf -
pm rm -f "$cid" >/dev/null
cid=""
for f in usr/local/bin/firesfu usr/share/firesfu/web/index.html usr/share/firesfu/web/app.js; do
  [ -f "$rootfs/$f" ] || { echo "the image lacks /$f" >&2; exit 1; }
done
[ ! -e "$rootfs/usr/share/firesfu/web/smoke.html" ] || { echo "the image ships the smoke-test page" >&2; exit 1; }
lap "podman create + export ($(du -sm "$rootfs" | cut -f1) MiB)"

# in_image LOG ARGS...: ARGS (the entrypoint and its arguments) in the exported image, as the
# image's user, in private mount and PID namespaces: the tree bind-mounted read-only as /, /proc,
# a tiny /dev; the environment is exactly ENVS (the image's config plus test settings), passed
# to the inner shell serialized. Runs in the background: $in_image_pid is the unshare process.
in_image() {
  local log=$1
  shift
  local envs
  envs=$(printf '%q ' "${ENVS[@]}")
  setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin IMAGE_ENVS="$envs" \
    unshare --mount --pid --fork --kill-child --propagation private -- \
    bash -c '
      set -e
      root=$1 user=$2; shift 2
      eval "envs=($IMAGE_ENVS)"
      mount --bind "$root" "$root"
      mount -o remount,bind,ro "$root"
      mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
      mount -t tmpfs -o size=64k,mode=755,nosuid tmpfs "$root/dev"
      for d in null zero random urandom; do
        touch "$root/dev/$d"
        mount --bind "/dev/$d" "$root/dev/$d"
      done
      exec setpriv --no-new-privs env -i "${envs[@]}" chroot --userspec="$user" --groups="${user#*:}" "$root" "$@"
    ' in-image "$rootfs" "$user" "$@" >"$log" 2>&1 &
  in_image_pid=$!
  STARTED_GROUPS+=("$in_image_pid")
}

# run_in_image LOG ARGS...: the entrypoint with ARGS and the image's environment; waits.
run_in_image() {
  local log=$1
  shift
  ENVS=("${image_env[@]}")
  in_image "$log" ${entrypoint% } "$@"
  local rc=0
  wait "$in_image_pid" || rc=$?
  return $rc
}

echo "== image: the entrypoint in the image"
run_in_image "$logs/version.txt" --version
echo "   $(cat "$logs/version.txt")"
for cmd in broadcast sidecar monitor; do
  run_in_image "$logs/help-$cmd.txt" "$cmd" --help
  grep -q "^Usage: firesfu $cmd" "$logs/help-$cmd.txt" || { cat "$logs/help-$cmd.txt" >&2; exit 1; }
done
lap "--version; broadcast, sidecar, monitor --help"

echo "== image: firesfu sidecar and broadcast from the image"
if [ -z "${FIRESTORE_EMULATOR_HOST:-}" ]; then
  start_firestore_emulator "$logs"
fi
if [ -z "${FIRESFU_TEST_PG:-}" ]; then
  start_postgres image-test
fi
db="image_test_$$"
psql "$FIRESFU_TEST_PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
lap "Firestore emulator $FIRESTORE_EMULATOR_HOST, PostgreSQL $FIRESFU_TEST_PG"

firesfu_pid() {  # the firesfu process under an in_image unshare (its only child)
  local pid
  for _ in $(seq 50); do
    pid=$(pgrep -P "$1" | head -1 || true)
    if [ -n "$pid" ] && [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */usr/local/bin/firesfu ]]; then
      echo "$pid"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# stops_on_term NAME UNSHARE PID LOG: SIGTERM to PID (PID 1 of its namespace, as in a pod) ends
# it with exit 0 within 20 s.
stops_on_term() {
  local name=$1 unshare=$2 pid=$3 log=$4 rc=0
  kill -TERM "$pid"
  for _ in $(seq 200); do
    kill -0 "$unshare" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$unshare" 2>/dev/null; then
    echo "$name: still running 20 s after SIGTERM (a PID 1 without a handler ignores it)" >&2
    tail -5 "$log" >&2
    return 1
  fi
  wait "$unshare" || rc=$?
  [ $rc -eq 0 ] || { echo "$name exited with $rc on SIGTERM" >&2; tail -5 "$log" >&2; return 1; }
}

check_process() {  # check_process NAME PID: the user, privileges and root it runs with
  local name=$1 pid=$2 status
  status=$(cat "/proc/$pid/status")
  grep -qE '^Uid:\s+65532\s+65532\s+65532\s+65532' <<<"$status" || { echo "$name: not uid 65532" >&2; grep ^Uid <<<"$status" >&2; return 1; }
  grep -qE '^Gid:\s+65532\s+65532\s+65532\s+65532' <<<"$status" || { echo "$name: not gid 65532" >&2; return 1; }
  grep -qE '^CapEff:\s+0+$' <<<"$status" || { echo "$name: has capabilities" >&2; grep ^Cap <<<"$status" >&2; return 1; }
  grep -qE '^NoNewPrivs:\s+1' <<<"$status" || { echo "$name: no_new_privs is not set" >&2; return 1; }
  # Its / is the exported image, mounted read-only.
  awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo" | grep -q '^ro' \
    || { echo "$name: its root is not read-only" >&2; return 1; }
  echo "   $name: pid $pid, uid/gid 65532, no capabilities, no_new_privs, read-only root"
}

# The sidecar: FIRESFU_WEB_ROOT comes from the image, not from here.
sidecar_port=$(free_port)
ENVS=("${image_env[@]}" GOOGLE_CLOUD_PROJECT="demo-image-$$" FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST"
  DATABASE_URL="$FIRESFU_TEST_PG/$db" APP_PORT="$sidecar_port" FIRESFU_SIDECAR_BIND_IP=127.0.0.1
  FIRESFU_LOG_FORMAT=json DISABLE_TELEMETRY=true)
in_image "$logs/sidecar.log" ${entrypoint% } sidecar
sidecar_unshare=$in_image_pid
api="http://127.0.0.1:$sidecar_port"
wait_http "$api/healthz" ok 60 || { tail -20 "$logs/sidecar.log" >&2; exit 1; }
lap "sidecar up (migrations applied)"
sidecar=$(firesfu_pid "$sidecar_unshare")
check_process sidecar "$sidecar"
curl -fsS "$api/readyz" | grep -q ready
curl -fsS "$api/" -o "$logs/index.html"
cmp -s "$logs/index.html" "$rootfs/usr/share/firesfu/web/index.html" \
  || { echo "GET / is not the image's web/index.html" >&2; exit 1; }
curl -fsS "$api/app.js" -o "$logs/app.js"
cmp -s "$logs/app.js" "$rootfs/usr/share/firesfu/web/app.js" || { echo "GET /app.js is not the image's" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "$api/smoke.html")
[ "$code" = 404 ] || { echo "GET /smoke.html answered $code, not 404" >&2; exit 1; }
echo "   GET /healthz, /readyz: ok; GET / and /app.js: the image's files; GET /smoke.html: 404"
stops_on_term sidecar "$sidecar_unshare" "$sidecar" "$logs/sidecar.log"
lap "sidecar checks, SIGTERM: exit 0"

http_port=$(free_port)
udp_port=$(free_port)
ENVS=("${image_env[@]}" GOOGLE_CLOUD_PROJECT="demo-image-$$" FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST"
  APP_PORT="$http_port" FIRESFU_HTTP_BIND_IP=127.0.0.1 FIRESFU_UDP_BIND="127.0.0.1:$udp_port"
  FIRESFU_DEV_NO_AUTH=true FIRESFU_LOG_FORMAT=json DISABLE_TELEMETRY=true)
in_image "$logs/broadcast.log" ${entrypoint% } broadcast
broadcast_unshare=$in_image_pid
wait_http "http://127.0.0.1:$http_port/healthz" ok 60 || { tail -20 "$logs/broadcast.log" >&2; exit 1; }
broadcast=$(firesfu_pid "$broadcast_unshare")
check_process broadcast "$broadcast"
curl -fsS "http://127.0.0.1:$http_port/stats" | grep -q '"instance"'
stops_on_term broadcast "$broadcast_unshare" "$broadcast" "$logs/broadcast.log"
lap "broadcast /healthz, /stats, SIGTERM: exit 0"

# A pod stopped while it starts: SIGTERM as soon as the process has logged its first line
# (before it serves). Once it failed here: the handler was installed only when serving began,
# and PID 1 ignored the signal.
in_image "$logs/broadcast-early.log" ${entrypoint% } broadcast
broadcast_unshare=$in_image_pid
broadcast=$(firesfu_pid "$broadcast_unshare")
for _ in $(seq 100); do
  [ -s "$logs/broadcast-early.log" ] && break
  sleep 0.05
done
stops_on_term "broadcast (starting)" "$broadcast_unshare" "$broadcast" "$logs/broadcast-early.log"
lap "broadcast: SIGTERM at its first log line: exit 0"

printf '== image: ok in %.0f s; image %d MiB (base %d MiB + firesfu %d MiB)\n' \
  "$(echo "$(date +%s.%N) - $t_all" | bc)" $((size / 1048576)) $((base_size / 1048576)) $(((size - base_size) / 1048576))
