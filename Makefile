# fctrace: `make run` builds and starts the daemon, `make test` runs every test.
# The cargo target directory lives outside the clone so RocksDB's C++ (about 20 minutes
# on a 2-core machine) is built once and reused; run and test share the release profile.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/fctrace/target
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN := $(CARGO_TARGET_DIR)/release/fctrace
ARGS ?=

.PHONY: deps test-deps build run test lint bench fuzz soak examples demo clean-data

# What building needs.
deps:
	@command -v cargo >/dev/null || { echo "cargo is required: install Rust from https://rustup.rs"; exit 1; }
	@dpkg -s libclang-dev >/dev/null 2>&1 || { \
	  echo "installing libclang-dev (RocksDB's bindgen needs it)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libclang-dev; }

# What the tests need beyond building: Node for the real SDK clients, Chromium for the UI,
# Prometheus for the dashboard test, openssl and curl for the TLS test, nats-server for
# the cluster test.
# (Python packages and npm packages are installed by the tests themselves.)
test-deps: deps
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (the web UI test drives it)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	@command -v prometheus >/dev/null || { \
	  echo "installing prometheus (the dashboard test scrapes fctrace with it)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus; }
	@command -v npm >/dev/null || { \
	  echo "installing nodejs and npm (the end-to-end tests run real Jaeger clients)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	@{ test -x /usr/sbin/nats-server || test -x /usr/bin/nats-server; } || { \
	  echo "installing nats-server (the cluster test runs its log on JetStream)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nats-server; }
	@{ command -v openssl && command -v curl; } >/dev/null || { \
	  echo "installing openssl and curl (the TLS test makes a CA and talks HTTPS)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssl curl; }

build: deps
	cargo build --release

run: build
	$(BIN) serve $(ARGS)

lint: deps
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

test: test-deps lint
	@# test binaries no build has touched for three days are stale versions (each one
	@# ~130 MB): they once filled this machine's disk; cargo rebuilds any it still needs
	@find "$(CARGO_TARGET_DIR)/release/deps" -maxdepth 1 -type f -executable -mtime +3 \
	  ! -name '*.so' -delete 2>/dev/null || true
	cargo test --release -- --test-threads=2

# The benchmark suite (about 11 minutes: a 5-minute decay run, then each protocol):
# writes the table to bench-results.md.
bench: build
	scripts/bench.sh

# Every decoder of outside bytes under libFuzzer, FUZZ_SECONDS (120) each; see RELIABILITY.md.
fuzz: deps
	scripts/fuzz.sh

# One hour at half the measured capacity, RSS and latency each minute (SOAK_SECONDS, SOAK_RATE).
soak: build
	scripts/soak.sh

# The example functions' packages, installed beside them (a virtualenv and node_modules).
examples: test-deps
	@test -x examples/functions/python/.venv/bin/python || python3 -m venv examples/functions/python/.venv
	examples/functions/python/.venv/bin/pip install --quiet --disable-pip-version-check -r examples/functions/python/requirements.txt
	cd examples/functions/node && npm install --no-audit --no-fund --loglevel=error

# The demo stack without Docker: fctrace, the example functions spawned by it, a caller.
demo: build examples
	examples/demo.sh

clean-data:
	rm -rf ./data
