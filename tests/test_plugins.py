"""Policies found by name through the ``zspool.shrinker_policies`` entry points: ours and a
throwaway third-party package installed from ``tests/data`` for this test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zspool import Pool
from zspool.policies import available_policies, load_policy
from zspool.shrinker import ShrinkerPolicy
from zspool.workload import fragment

THIRD_PARTY = Path(__file__).parent / "data" / "thirdparty_policy"


@pytest.fixture(scope="module")
def third_party_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the throwaway package into a private directory put on sys.path, so the
    test sees a real distribution with real entry points and leaves the environment alone."""
    target = tmp_path_factory.mktemp("site")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path_factory.mktemp("src") / "thirdparty_policy"
    shutil.copytree(THIRD_PARTY, source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        check=True,
    )
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("zspool_test_thirdparty")]:
        del sys.modules[name]


def test_the_shipped_policies_are_installed_and_satisfy_the_protocol() -> None:
    names = available_policies()
    for name in ("always", "idle-only", "pressure-gated"):
        assert name in names, f"{name} missing: run the README's set-up command ({names})"
        assert isinstance(load_policy(name), ShrinkerPolicy)


def test_a_pool_selects_a_third_party_policy_by_name(third_party_installed: Path) -> None:
    assert "zspool-test-thirdparty" in available_policies()["test-halves"]
    with Pool() as pool:
        fragment(pool, 20_000, seed=5)
        before = pool.can_compact()
        shrinker = pool.register_shrinker("test-halves", fraction=0.5)
        freed = pool.shrink()
        assert before // 2 <= freed < before
        assert shrinker.stats.pages_freed == freed


def test_a_broken_third_party_policy_is_isolated(third_party_installed: Path) -> None:
    with Pool() as pool:
        survivors = fragment(pool, 5_000, seed=6)
        shrinker = pool.register_shrinker("test-broken", max_failures=2)
        for _ in range(3):
            assert pool.shrink() == 0
        assert shrinker.stats.disabled and "third-party bug" in (shrinker.stats.last_error or "")
        assert all(pool.load(h) == data for h, data in survivors.items())


def test_an_unimportable_entry_point_names_its_distribution(third_party_installed: Path) -> None:
    with pytest.raises(ImportError, match="zspool-test-thirdparty"):
        load_policy("test-unimportable")
