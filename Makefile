# firesfu: `make dev` runs everything locally, `make test` runs every test.
.PHONY: dev test bench build clean

# Build outputs outside the checkout, shared by every clone on the machine (scripts/lib.sh).
export CARGO_TARGET_DIR ?= /var/tmp/firesfu-target

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

build:
	cargo build --release --bin firesfu

clean:
	cargo clean
