# firesfu: `make dev` runs everything locally, `make test` runs every test.
.PHONY: dev test bench build clean

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
