#!/usr/bin/env bash
# Installs what builds and tests need, idempotently (a fresh CI machine has none of it).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(libssl-dev pkg-config protobuf-compiler iproute2 nftables chromium curl)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v gcloud >/dev/null || { echo "gcloud (with the Firestore emulator) is required" >&2; exit 1; }

# The browser code and its tests: Firebase SDK, esbuild, playwright-core (never a browser
# download: Debian's Chromium is used).
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules ]; then
  (cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  touch web/node_modules
fi
