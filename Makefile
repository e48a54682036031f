# The two commands the README gives, and the pieces they are made of.
#   make demo   install zspool (release build) and run `zspool demo`
#   make test   install everything the tests need, then run every test, Rust and Python
SHELL := /bin/bash
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export MATURIN_NO_INSTALL_RUST := 1
PLUGINS := plugins/always plugins/idle-only plugins/pressure-gated

.PHONY: demo test install-dev rust-test rust-lint loom py-test stubtest wheel-test asv-smoke

demo:
	$(PIP) install --quiet . $(addprefix ./,$(PLUGINS))
	zspool demo

test: install-dev rust-lint rust-test loom py-test stubtest asv-smoke

install-dev:
	$(PIP) install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))

rust-lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

rust-test:
	cargo test --workspace

# The lock protocol, model-checked: every interleaving of compaction against a concurrent
# free, read and write of the same object (rust/zspool-core/tests/loom.rs).
loom:
	RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
		cargo test -p zspool-core --test loom --release

py-test:
	$(PYTHON) -m pytest

stubtest:
	$(PYTHON) -m mypy.stubtest zspool._core

# Every asv benchmark once, against the installed package (nothing saved): a broken
# benchmark fails the build. About 10 s.
asv-smoke:
	$(PYTHON) -m asv machine --yes --config asv_bench/asv.conf.json > /dev/null
	$(PYTHON) -m asv run --config asv_bench/asv.conf.json --python=same --quick --dry-run --show-stderr
