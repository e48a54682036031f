"""Shared fixtures for the zspool test suite.

The tests import the *installed* package (``pip install -e '.[test]'`` or
``maturin develop --release``); nothing here touches ``sys.path``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, settings

import zspool

# Hypothesis: no per-example deadline (a compaction step can take a few ms on a loaded
# 2-core CI box); "ci" is the default so the whole suite stays within about a minute.
settings.register_profile(
    "ci", max_examples=40, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=500, stateful_step_count=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


REQUIRE_LIVE = os.environ.get("ZSPOOL_REQUIRE_LIVE") == "1"


def live_unavailable(reason: str) -> NoReturn:
    """A live kernel interface (PSI, a PSI trigger, cgroup memory) is not there: skip, or,
    with ``ZSPOOL_REQUIRE_LIVE=1`` (set by ``make test`` and so by CI, whose machines have
    them all), fail, so a broken reader cannot pass as a skip."""
    if REQUIRE_LIVE:
        pytest.fail(f"ZSPOOL_REQUIRE_LIVE=1 but a live kernel interface is unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(name="live_unavailable")
def live_unavailable_fixture() -> Callable[[str], NoReturn]:
    """The :func:`live_unavailable` helper, as a fixture (test modules do not import conftest)."""
    return live_unavailable


@pytest.fixture
def pool() -> Iterator[zspool.Pool]:
    """A fresh pool, closed after the test."""
    p = zspool.Pool(name="test")
    try:
        yield p
    finally:
        p.close()


def pattern(seed: int, size: int) -> bytes:
    """``size`` deterministic, seed-dependent bytes (no two seeds agree in the first 32)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(name="pattern")
def pattern_fixture() -> object:
    """The :func:`pattern` helper, as a fixture (test modules do not import conftest)."""
    return pattern


@pytest.fixture(name="rss")
def rss_fixture() -> object:
    """The :func:`rss_bytes` helper, as a fixture."""
    return rss_bytes


@pytest.fixture(scope="session")
def memcg_parent() -> object:
    """Where a test may create a v1 memory cgroup (:mod:`zspool.memcg`). Skips with the
    reason where there is none, but fails when ``ZSPOOL_REQUIRE_LIVE=1`` (CI) says the
    machine must have one."""
    from zspool.memcg import writable_memory_cgroup_parent
    from zspool.pressure import Unavailable

    parent = writable_memory_cgroup_parent()
    if isinstance(parent, Unavailable):
        live_unavailable(f"no writable cgroup v1 memory controller: {parent}")
    return parent
