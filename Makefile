# firesfu: `make dev` runs everything locally, `make test` runs every test.
.PHONY: dev test bench fuzz soak build clean

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

# Rooms of str0m peers with churn for SOAK_SECS (default 1800) on one instance; memory, file
# descriptors, tasks and engine tables at start and end (docs/reliability.md).
soak:
	bash scripts/deps.sh
	FIRESFU_SOAK_SECS=$${SOAK_SECS:-1800} FIRESFU_SOAK_ROOMS=$${SOAK_ROOMS:-3} \
		cargo test --test soak -- --nocapture

build:
	cargo build --release --bin firesfu

clean:
	cargo clean
