# The two commands the README gives, and the pieces they are made of.
#   make demo   install zspool (release build) and run `zspool demo`
#   make test   install everything the tests need, then run every test, Rust and Python
SHELL := /bin/bash
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export MATURIN_NO_INSTALL_RUST := 1
PLUGINS := plugins/always plugins/idle-only plugins/pressure-gated

.PHONY: demo test install-dev rust-test rust-lint loom valgrind fuzz-install fuzz-smoke fuzz-long py-test stubtest wheel-test asv-smoke

demo:
	$(PIP) install --quiet . $(addprefix ./,$(PLUGINS))
	zspool demo

test: install-dev rust-lint rust-test loom valgrind fuzz-smoke py-test stubtest asv-smoke

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

# The core's unit and integration tests under valgrind memcheck (the cargo runner trick):
# any invalid access, uninitialised read or definite leak fails the build. Proptest cases
# and stress operations are scaled down (each runs ~50x slower under valgrind); the RLIMIT_AS
# test is skipped (valgrind's own mappings count against the limit). See docs/HARDENING.md.
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --show-possibly-lost=no \
	--errors-for-leak-kinds=definite,indirect
valgrind:
	command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$(VALGRIND)" PROPTEST_CASES=4 ZSPOOL_STRESS_OPS=15000 \
		cargo test -p zspool-core --lib --tests -- --skip os_refusing_memory

# Coverage-guided fuzzing of the core (cargo-fuzz + libFuzzer, stable Rust: no sanitizer)
# against a model: rust/zspool-core/fuzz/fuzz_targets/pool_ops.rs. New inputs go to a
# scratch directory; the committed seed corpus is only read.
FUZZ_TARGET_DIR ?= $(CURDIR)/target/fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUN = cd rust/zspool-core && CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) cargo fuzz run --sanitizer none -O pool_ops
fuzz-install:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fuzz-smoke: fuzz-install
	scratch=$$(mktemp -d) && $(FUZZ_RUN) $$scratch fuzz/corpus/pool_ops -- \
		-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1; \
		status=$$?; rm -rf $$scratch; exit $$status
# The long run (docs/HARDENING.md): FUZZ_SECONDS=3600 by default, new inputs kept in
# target/fuzz-corpus (merge the interesting ones into the seed corpus with `cargo fuzz cmin`).
fuzz-long: fuzz-install
	mkdir -p $(CURDIR)/target/fuzz-corpus
	$(FUZZ_RUN) $(CURDIR)/target/fuzz-corpus fuzz/corpus/pool_ops -- \
		-max_total_time=$${FUZZ_LONG_SECONDS:-3600} -rss_limit_mb=2048 -print_final_stats=1

py-test:
	$(PYTHON) -m pytest

stubtest:
	$(PYTHON) -m mypy.stubtest zspool._core

# Every asv benchmark once, against the installed package (nothing saved): a broken
# benchmark fails the build. About 10 s (the random-key benchmarks at 20,000 entries here,
# not their million).
asv-smoke:
	$(PYTHON) -m asv machine --yes --config asv_bench/asv.conf.json > /dev/null
	ZSPOOL_ASV_ENTRIES=20000 $(PYTHON) -m asv run --config asv_bench/asv.conf.json --python=same --quick --dry-run --show-stderr
