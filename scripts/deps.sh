#!/usr/bin/env bash
# Installs what builds and tests need, idempotently (a fresh CI machine has none of it), and
# says clearly what is missing when it cannot be installed from here.
set -euo pipefail
cd "$(dirname "$0")/.."

missing_tool() {
  echo "deps: $1 is required but missing. $2" >&2
  exit 1
}

apt_packages=(libssl-dev pkg-config protobuf-compiler iproute2 nftables chromium curl coturn)
# PostgreSQL server binaries (initdb, pg_ctl): the sidecar's tests and `make dev` run a cluster.
[ -x /usr/lib/postgresql/15/bin/initdb ] || apt_packages+=(postgresql-15)
command -v python3 >/dev/null || apt_packages+=(python3)
command -v java >/dev/null || apt_packages+=(default-jre-headless)
# The test IP camera (tests/rtsp/camera.py, run with Debian's /usr/bin/python3, which has `gi`):
# a GStreamer RTSP server; x264enc is in -ugly, x265enc and voaacenc (AAC) in -bad, mulawenc,
# the RTP payloaders and cairooverlay (the latency stamp) in -good, videotestsrc, timeoverlay
# and audiotestsrc in -base; python3-gi-cairo hands cairooverlay's context to Python.
apt_packages+=(gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-tools python3-gi python3-gi-cairo)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    missing_tool "${missing[*]}" "Install them (apt-get install ${missing[*]}) or run as root."
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v node >/dev/null && command -v npm >/dev/null \
  || missing_tool "Node.js 20 with npm" "Install Node.js 20 (https://nodejs.org or your distribution)."
command -v gcloud >/dev/null \
  || missing_tool "the Google Cloud CLI" "Install it with the Firestore and Pub/Sub emulators (https://cloud.google.com/sdk/docs/install)."
sdk=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
for component in cloud-firestore-emulator pubsub-emulator; do
  [ -d "$sdk/platform/$component" ] \
    || missing_tool "the gcloud component $component" "Run: gcloud components install $component (or apt-get install google-cloud-cli-${component%-emulator}-emulator)."
done

# The browser code and its tests: Firebase SDK, esbuild, playwright-core (never a browser
# download: Debian's Chromium is used).
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules ]; then
  (cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  touch web/node_modules
fi

# The webhook tests' receiver verifies deliveries with the Standard Webhooks reference library.
if ! python3 -c 'import standardwebhooks' 2>/dev/null; then
  echo "deps: installing standardwebhooks (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check 'standardwebhooks==1.*'
fi

# `make fuzz` (and its smoke in `make test`): cargo-fuzz, pinned, built once per machine. It
# needs a C++ compiler for libFuzzer.
if [ "${1:-}" = "--fuzz" ]; then
  command -v c++ >/dev/null || missing_tool "a C++ compiler" "Install g++ (apt-get install g++)."
  if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
    echo "deps: installing cargo-fuzz 0.13.2"
    cargo install --quiet --locked cargo-fuzz --version 0.13.2
  fi
fi
