"""cachetools' own test suite, run against ``zspool.Cache`` (through ``cachetools_adapter``).

The tests come from the cachetools sdist (it ships ``tests/``), downloaded once with
``pip download --no-deps --no-binary :all: cachetools==CACHETOOLS_VERSION`` into
``.pytest_cache/d/``. Run as their authors wrote them:

- ``CacheTestMixin`` (every cache's contract) against the adapter (SIEVE eviction);
- ``test_lru.py`` with ``LRUCache`` replaced by the adapter with ``eviction="lru"``;
- the ``cached`` and ``cachedmethod`` decorator tests, with their ``cache()`` factory
  returning the adapter.

Every test passes or is an expected failure listed in :data:`DIFFERENCES` with its reason,
a documented semantic difference (strict: an unexpected pass fails). Without network the
module skips, saying why; with ``ZSPOOL_REQUIRE_LIVE=1`` (CI) a failed download fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import types
import unittest
from pathlib import Path
from typing import Any

import cachetools
import pytest
from cachetools_adapter import ZspoolCache, ZspoolLRUCache

#: The version whose tests run; the installed cachetools must match (pyproject's test extra).
CACHETOOLS_VERSION = "8.0.2"
SDIST_DIR = (
    Path(__file__).resolve().parent.parent
    / ".pytest_cache"
    / "d"
    / f"cachetools-{CACHETOOLS_VERSION}"
)

_COPIED = (
    "values are copied in and out (zspool.Cache's forced difference 2): a shallow copy cannot "
    "share value objects with its source, source[1] is cache[1] is false"
)
_NO_ZERO_SIZE = (
    "every entry takes bytes (a header and its key), so the adapter cannot store an entry of "
    "getsizeof() == 0 units; cachetools stores it for free"
)

#: Tests that fail for a documented reason: "Class.test_name" -> the reason.
DIFFERENCES: dict[str, str] = {
    "TestCacheMixin.test_copy_attributes": _COPIED,
    "TestLRU.test_copy_attributes": _COPIED,
    "TestCachedMethod.test_value_too_large": _NO_ZERO_SIZE,
}


def _fetch_tests() -> Path:
    """The sdist's tests/ directory, downloaded and unpacked on first use."""
    tests = SDIST_DIR / f"cachetools-{CACHETOOLS_VERSION}" / "tests"
    if tests.is_dir():
        return tests
    SDIST_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               "--disable-pip-version-check", f"cachetools=={CACHETOOLS_VERSION}", "-d", str(SDIST_DIR)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    archives = sorted(SDIST_DIR.glob(f"cachetools-{CACHETOOLS_VERSION}.tar.gz"))
    if done.returncode != 0 or not archives:
        raise RuntimeError(
            f"pip download of the cachetools {CACHETOOLS_VERSION} sdist failed: {done.stderr.strip()}"
        )
    with tarfile.open(archives[0]) as tar:
        tar.extractall(SDIST_DIR, filter="data")
    return tests


def _load(tests: Path) -> dict[str, types.ModuleType]:
    """Import the sdist's tests as the package ``cachetools_tests``."""
    package = "cachetools_tests"
    spec = importlib.util.spec_from_file_location(
        package, tests / "__init__.py", submodule_search_locations=[str(tests)]
    )
    assert spec is not None and spec.loader is not None
    root = importlib.util.module_from_spec(spec)
    sys.modules[package] = root
    spec.loader.exec_module(root)
    modules = {"": root}
    for name in ("test_lru", "test_cached", "test_cachedmethod"):
        modules[name] = importlib.import_module(f"{package}.{name}")
    return modules


def _suite() -> dict[str, types.ModuleType] | str:
    if cachetools.__version__ != CACHETOOLS_VERSION:
        return f"cachetools {cachetools.__version__} is installed; the suite is pinned to {CACHETOOLS_VERSION}"
    try:
        return _load(_fetch_tests())
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return f"cachetools' test suite is not available (no network?): {exc}"


SUITE = _suite()

if isinstance(SUITE, str):
    REASON = SUITE

    def test_cachetools_suite_is_available() -> None:
        if os.environ.get("ZSPOOL_REQUIRE_LIVE") == "1":
            pytest.fail(REASON)
        pytest.skip(REASON)

else:
    # The suite's modules are loaded at run time: mypy cannot see their classes.
    lru: Any = SUITE["test_lru"]
    lru.LRUCache = ZspoolLRUCache  # the module's own name for the class under test
    mixin: Any = SUITE[""].CacheTestMixin
    cached_tests: Any = SUITE["test_cached"].CacheWrapperTest
    cachedmethod_tests: Any = SUITE["test_cachedmethod"].CacheMethodTest

    class TestCacheMixin(unittest.TestCase, mixin):
        """Every cache's contract, against the SIEVE cache."""

        Cache = ZspoolCache

    class TestLRU(lru.LRUCacheTest):
        Cache = ZspoolLRUCache

    class TestCached(cached_tests):
        def cache(self, minsize: int) -> ZspoolCache:
            return ZspoolCache(maxsize=minsize)

    class TestCachedMethod(cachedmethod_tests):
        def cache(self, minsize: int, **kwargs: object) -> ZspoolCache:
            return ZspoolCache(maxsize=minsize, **kwargs)  # type: ignore[arg-type]

    def _mark_differences(*classes: type) -> None:
        for cls in classes:
            for name in dir(cls):
                reason = DIFFERENCES.get(f"{cls.__name__}.{name}")
                if reason is not None:
                    setattr(
                        cls, name, pytest.mark.xfail(reason=reason, strict=True)(getattr(cls, name))
                    )

    _mark_differences(TestCacheMixin, TestLRU, TestCached, TestCachedMethod)
    del mixin, cached_tests, cachedmethod_tests  # else pytest collects the suite's own classes too
