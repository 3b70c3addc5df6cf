#!/usr/bin/env bash
# `make test`: every check and test, against real emulators and a real browser.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

bash scripts/deps.sh

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings

logs="$FIRESFU_ROOT/target/test-logs"
mkdir -p "$logs"
trap 'stop_groups; stop_postgres' EXIT
echo "== emulators and PostgreSQL"
start_firestore_emulator "$logs"
echo "firestore emulator at $FIRESTORE_EMULATOR_HOST"
start_postgres "$FIRESFU_ROOT/target/test-pg"
echo "postgres at $FIRESFU_TEST_PG"

echo "== cargo test"
cargo test --workspace -- --test-threads=2

if [ -f tests/browser/run.sh ]; then
  echo "== browser smoke test"
  bash tests/browser/run.sh
fi
echo "== all tests passed"
