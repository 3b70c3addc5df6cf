#!/usr/bin/env bash
# `make test`: every check and test, against real emulators and a real browser.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

prune_build_outputs
bash scripts/deps.sh

echo "== fmt"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== web: type check, layout rules"
(cd web && npx --no-install tsc -p . && node --test test/layout.test.mjs)

logs="$FIRESFU_ROOT/target/test-logs"
mkdir -p "$logs"
trap 'stop_groups; stop_postgres' EXIT
echo "== emulators (Firestore, Pub/Sub) and PostgreSQL"
start_firestore_emulator "$logs"
echo "firestore emulator at $FIRESTORE_EMULATOR_HOST"
start_pubsub_emulator "$logs" demo-test
echo "pub/sub emulator at $PUBSUB_EMULATOR_HOST"
start_postgres test
echo "postgres at $FIRESFU_TEST_PG"
# A camera key for this run: the servers the scripts start (schemathesis's sidecar among them)
# seal camera settings with it. The Rust tests pass their own.
FIRESFU_CAMERA_KEY=$(openssl rand -base64 32)
export FIRESFU_CAMERA_KEY

echo "== scripts: PostgreSQL from a private checkout"
bash tests/scripts/private_clone.sh

echo "== cargo test"
cargo test --workspace -- --test-threads=2

echo "== fuzz: a short run of every target (and their past crashes)"
bash scripts/fuzz.sh --smoke

echo "== deploy: manifests, terraform, indexes (offline)"
bash tests/deploy/check.sh
echo "== deploy: the container image, built and run"
bash tests/deploy/image.sh

echo "== API: schemathesis against the live sidecar"
bash tests/api/schemathesis.sh

echo "== firestore.rules"
(cd web && FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" node --test test/rules.test.mjs)

echo "== browser: smoke test (Chromium and a str0m peer)"
bash tests/browser/smoke.sh
echo "== interop: a third WebRTC stack (Python aiortc) and str0m"
bash tests/interop/aiortc.sh
echo "== browser: the meeting app (two Chromium users)"
bash tests/browser/app.sh
echo "== browser: presenting (three Chromium users, axe-core, keyboard only)"
bash tests/browser/present.sh
echo "== browser: IP cameras (an RTSP camera added in the web app, two Chromium users)"
bash tests/browser/cameras.sh
echo "== browser: WHIP ingest (Eyevinn's WHIP client in Chromium, VP8 and H.264; the web app views)"
bash tests/browser/whip.sh
echo "== browser: WHEP playback (Eyevinn's WHEP player in Chromium plays a participant and the presenter)"
bash tests/browser/whep.sh
echo "== adaptation: simulcast layers by what each subscriber shows, dynacast, paused slots (Chromium)"
# Known flaky under CPU contention (two cores, three Chromium pages encoding and decoding
# simulcast): a failed run is reported, its logs kept in target/test-logs/adaptation-failed,
# and the test runs once more; a second failure fails make test.
if ! bash tests/adaptation/browser.sh; then
  rm -rf target/test-logs/adaptation-failed
  mv target/test-logs/adaptation target/test-logs/adaptation-failed
  echo "== adaptation: FAILED once (logs in target/test-logs/adaptation-failed); running it again"
  bash tests/adaptation/browser.sh
fi
echo "== connectivity: ICE-TCP, ICE restart, TURN (coturn), IPv6 with Chromium and the web app"
bash tests/connectivity/browser.sh
echo "== all tests passed"
