# The two commands the README gives, and the pieces they are made of.
#   make demo   install zspool (release build) and run `zspool demo`
#   make test   install everything the tests need, then run every test, Rust and Python
# and the quick loop while changing things (a few minutes; `make test` is the gate):
#   make check  formatting, lints, type checks, Rust unit tests, Python tests on a debug build
SHELL := /bin/bash
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export MATURIN_NO_INSTALL_RUST := 1
PLUGINS := plugins/always plugins/idle-only plugins/pressure-gated

.PHONY: demo test check dist contrib-deps install-dev dev-build rust-test rust-lint loom valgrind fuzz-install fuzz-smoke fuzz-long \
	py-lint py-test stubtest asv-smoke figures-smoke cgroup-smoke records-smoke

demo:
	$(PIP) install --quiet . $(addprefix ./,$(PLUGINS))
	zspool demo

test: install-dev rust-lint rust-test loom valgrind fuzz-smoke py-lint py-test stubtest asv-smoke figures-smoke cgroup-smoke records-smoke
# The project's machines have every live kernel interface the tests use (PSI, PSI triggers,
# a memory cgroup): under `make test` a test that finds one missing fails instead of skipping.
test: export ZSPOOL_REQUIRE_LIVE := 1

# The quick loop: no loom, valgrind, fuzzing or benchmarks, the Rust unit tests only, and the
# extension built with the dev profile (seconds to rebuild, where the release profile's fat LTO
# takes minutes). Run `make install-dev` afterwards before benchmarking: this leaves the
# debug build installed.
check: dev-build rust-lint py-lint
	cargo test --workspace --lib
	$(PYTHON) -m pytest -q
	$(PYTHON) -m mypy.stubtest zspool._core

install-dev: contrib-deps
	$(PIP) install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))

# What install-dev installs, with the extension built by the dev profile (debug, incremental).
dev-build:
	MATURIN_PEP517_ARGS="--profile dev" $(PIP) install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))

# --- issue 15: integrations (zspool.contrib) and release artifacts ---
# The real servers the tests start: valkey-server (8.0, bookworm-backports) for the near-cache
# tests, redis-server and memcached for the peers harness (Debian; idempotent).
contrib-deps:
	bash tests/contrib/install-servers.sh

# What an index accepts: a manylinux2014 (glibc 2.17) abi3 wheel for CPython >= 3.11, linked
# with zig, and the sdist; auditwheel must report the manylinux tag and twine the metadata OK.
DIST ?= dist
dist:
	$(PIP) install --quiet 'maturin>=1.9.4,<2' ziglang auditwheel twine
	rm -rf $(DIST)
	maturin build --release --locked --zig --compatibility manylinux2014 --out $(DIST)
	maturin sdist --out $(DIST)
	auditwheel show $(DIST)/zspool-*.whl | tee $(DIST)/auditwheel.txt
	grep -q 'manylinux_2_17_x86_64' $(DIST)/auditwheel.txt
	$(PYTHON) -m twine check --strict $(DIST)/*.whl $(DIST)/*.tar.gz
# --- end issue 15 ---

rust-lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

rust-test:
	cargo test --workspace

# The lock protocol, model-checked: every interleaving of compaction against a concurrent
# free, read and write of the same object (rust/zspool-core/tests/loom.rs), and a model of
# SharedCache's lock-free read against a move and a reuse (tests/loom_shared_read.rs). Each model fails
# if loom explored a single interleaving; this step fails if no test ran (the file is
# `#![cfg(loom)]`, so a lost `--cfg loom` compiles it to nothing).
loom:
	mkdir -p target && set -o pipefail && RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
		cargo test -p zspool-core --test loom --test loom_shared_read --release 2>&1 | tee target/loom.log
	grep -Eq "test result: ok\. [1-9][0-9]* passed" target/loom.log || (echo "loom: no test ran"; exit 1)

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
	# The shared file's unit tests and its garbage-file test (random bytes in the header,
	# metadata and objects: an out-of-bounds read would show here); its children killed on
	# purpose are not checked for leaks. ~70 s.
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$(VALGRIND) --child-silent-after-fork=yes" \
		cargo test -p zspool-shared --lib --test garbage

# Coverage-guided fuzzing of the core (cargo-fuzz + libFuzzer, stable Rust: no sanitizer)
# against a model: rust/zspool-core/fuzz/fuzz_targets/pool_ops.rs. New inputs go to a
# scratch directory; the committed seed corpus is only read.
FUZZ_TARGET_DIR ?= $(CURDIR)/target/fuzz
FUZZ_SECONDS ?= 60
# No -O: cargo-fuzz's default build is optimised with debug assertions and overflow checks
# on, so they can fail a run (-O turns them off).
FUZZ_RUN = cd rust/zspool-core && CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) cargo fuzz run --sanitizer none pool_ops
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

# ruff (lint and format) and mypy, configured in pyproject.toml, over the Python package and
# the plugins. About 10 s with mypy's cache warm, 40 s cold.
py-lint:
	$(PYTHON) -m ruff check
	$(PYTHON) -m ruff format --check
	$(PYTHON) -m mypy

py-test:
	$(PYTHON) -m pytest

# Every standalone figure script, the two compaction benchmarks, the shared cache's get/set
# benchmark and the peers harness once at a small N: a broken script fails the build (the
# figures mean nothing at this size; the full runs are the commands under the README's tables).
figures-smoke:
	cargo test -q -p zspool-core --bench compaction_latency > /dev/null
	cargo test -q -p zspool-core --bench compaction_rate > /dev/null
	ZSPOOL_BENCH_ENTRIES=20000 cargo test -q -p zspool-shared --bench get_set > /dev/null
	for script in pool_vs_dict cache_vs_dict cache_eviction policy_trace soak shared_cache; do \
		$(PYTHON) asv_bench/standalone/$$script.py --quick > /dev/null || exit 1; done
	out=$$(mktemp -d) && $(PYTHON) asv_bench/peers/run.py --quick --out $$out > /dev/null; \
		status=$$?; rm -rf $$out; exit $$status

# The real-cgroup benchmark in its small configuration, one trial per policy, chart included
# (asv_bench/standalone/cgroup_pressure.py; needs root and the cgroup v1 memory controller).
# About 10 s on an idle machine.
cgroup-smoke:
	mkdir -p target
	$(PYTHON) asv_bench/standalone/cgroup_pressure.py --quick --chart target/cgroup_pressure_quick.png

stubtest:
	$(PYTHON) -m mypy.stubtest zspool._core

# Every asv benchmark once, against the installed package (nothing saved): a broken
# benchmark fails the build. About 10 s (the random-key benchmarks at 20,000 entries here,
# not their million).
asv-smoke:
	$(PYTHON) -m asv machine --yes --config asv_bench/asv.conf.json > /dev/null
	ZSPOOL_ASV_ENTRIES=20000 $(PYTHON) -m asv run --config asv_bench/asv.conf.json --python=same --quick --dry-run --show-stderr

# The realistic-records benchmark (trained zstd dictionaries) in its quick mode: every row
# runs on 8,000 records and the dictionary must beat plain zstd. About 10 s.
records-smoke:
	$(PYTHON) asv_bench/standalone/records.py --quick
