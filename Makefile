# firesfu: `make dev` runs everything locally, `make test` runs every test.
.PHONY: dev test bench fuzz build clean

# Build outputs outside the checkout, shared by every clone on the machine (scripts/lib.sh).
export CARGO_TARGET_DIR ?= /var/tmp/firesfu-target

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

# Coverage-guided fuzzing of every target, FUZZ_SECONDS each (default 300); see docs/reliability.md.
fuzz:
	bash scripts/fuzz.sh

build:
	cargo build --release --bin firesfu

clean:
	cargo clean
