"""Django's own cache tests (``BaseCacheTests`` and the LocMem tests that are not about
LocMem's internals) against ``zspool.contrib.django.ZspoolCache``.

The Django sdist ships its test suite; it is downloaded once into the sdist cache
(``ZSPOOL_SDIST_CACHE``, default ``target/test-sdists``) for the installed Django version,
the adapter ``django_suite/zspool_tests.py`` is copied into its ``cache`` app, and Django's
``runtests.py`` runs it as the Django project runs its own backends. About 15 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import django  # type: ignore[import-untyped]
import pytest

REPO = Path(__file__).resolve().parents[2]
ADAPTER = Path(__file__).with_name("django_suite") / "zspool_tests.py"
SDIST_CACHE = Path(os.environ.get("ZSPOOL_SDIST_CACHE", REPO / "target" / "test-sdists"))


def django_source_tree() -> Path:
    """The installed Django version's sdist, downloaded once and unpacked."""
    version = django.__version__
    tree = SDIST_CACHE / f"django-{version}"
    if (tree / "tests" / "runtests.py").is_file():
        return tree
    SDIST_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"Django=={version}", "--dest", str(SDIST_CACHE)],
        check=True,
    )  # fmt: skip
    with tarfile.open(SDIST_CACHE / f"django-{version}.tar.gz") as archive:
        archive.extractall(SDIST_CACHE, filter="data")
    return tree


@pytest.mark.timeout(600)  # about 30 s here; a loaded 2-core CI box can take a few times that
def test_django_cache_suite_passes() -> None:
    tests = django_source_tree() / "tests"
    shutil.copy(ADAPTER, tests / "cache" / "zspool_tests.py")
    run = subprocess.run(
        [
            sys.executable,
            "runtests.py",
            "cache.zspool_tests",
            "--settings=test_sqlite",
            "--parallel=1",
            "-v",
            "2",
        ],
        check=False,
        cwd=tests,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = run.stderr
    print(report)  # the per-test lines, with each skip's reason, for the log
    assert run.returncode == 0, report[-5000:]
    ran = int(re.search(r"^Ran (\d+) tests?", report, re.MULTILINE).group(1))  # type: ignore[union-attr]
    skipped = re.findall(r"""^(test_\w+) .*\.\.\. skipped ['"](.*)['"]$""", report, re.MULTILINE)
    assert ran > 80, f"Django's suite ran only {ran} tests"
    # Every skip is one the adapter lists with its reason; nothing else is skipped.
    from_adapter = set(re.findall(r'^    "(test_\w+)":', ADAPTER.read_text(), re.MULTILINE))
    assert {name for name, _ in skipped} == from_adapter, skipped


def test_options_are_checked_and_shared_cache_is_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

    from zspool.contrib.django import ZspoolCache

    with pytest.raises(ImproperlyConfigured, match="SharedCache"):
        ZspoolCache("shared-store", {"OPTIONS": {"shared": True}})
    with pytest.raises(ImproperlyConfigured, match=r"unknown OPTIONS \['maxsize'\]"):
        ZspoolCache("typo-store", {"OPTIONS": {"maxsize": 1 << 20}})
    first = ZspoolCache("options-store", {"OPTIONS": {"maxbytes": 1 << 20, "compression": "lz4"}})
    second = ZspoolCache("options-store", {"OPTIONS": {"maxbytes": 1 << 20, "compression": "lz4"}})
    assert first._cache is second._cache and first._cache.compression == "lz4"
    with pytest.raises(ImproperlyConfigured, match="must ask for the same"):
        ZspoolCache("options-store", {"OPTIONS": {"maxbytes": 2 << 20}})
    first._cache.close()
