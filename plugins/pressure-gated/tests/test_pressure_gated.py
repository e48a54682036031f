"""``pressure-gated`` stays quiet below its threshold, compacts above it, and keeps its
reserve between the thresholds, driven by real-format PSI and cgroup files."""

from pathlib import Path

import pytest

from zspool import Pool
from zspool.pressure import CgroupMemorySource, PressureMonitor, PsiSource
from zspool.shrinker_policy import ShrinkReason
from zspool.workload import fragment
from zspool_policy_pressure_gated import PressureGatedPolicy

GiB = 2**30


def write_psi(path: Path, some_avg10: float) -> None:
    path.write_text(
        f"some avg10={some_avg10:.2f} avg60={some_avg10 / 2:.2f} avg300=0.10 total=123456\n"
        f"full avg10={some_avg10 / 3:.2f} avg60=0.00 avg300=0.00 total=45678\n"
    )


def write_cgroup_v2(directory: Path, current: int, high: str = "max", limit: str = "max") -> None:
    directory.mkdir(exist_ok=True)
    (directory / "memory.current").write_text(f"{current}\n")
    (directory / "memory.high").write_text(f"{high}\n")
    (directory / "memory.max").write_text(f"{limit}\n")
    write_psi(directory / "memory.pressure", 0.0)


Files = tuple[Path, Path, PressureMonitor]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    psi = tmp_path / "pressure_memory"
    cgroup = tmp_path / "cgroup"
    write_psi(psi, 0.0)
    write_cgroup_v2(cgroup, current=1 * GiB, limit=str(8 * GiB))
    monitor = PressureMonitor(psi=PsiSource(psi), cgroup=CgroupMemorySource(cgroup), meminfo=None)
    return psi, cgroup, monitor


def test_quiet_below_threshold(files: Files) -> None:
    _psi, _cgroup, monitor = files
    with Pool() as pool:
        fragment(pool, 20_000, seed=41)
        pool.register_shrinker(PressureGatedPolicy(threshold=0.5, monitor=monitor))
        assert pool.shrink() == 0 and pool.stats().objects_migrated == 0


def test_psi_above_threshold_compacts_but_keeps_the_reserve(files: Files) -> None:
    psi, _cgroup, monitor = files
    write_psi(psi, 6.0)  # 6 % of the last 10 s stalled: level 0.6 with the 10 % full scale
    with Pool() as pool:
        survivors = fragment(pool, 40_000, seed=42)
        freeable = pool.can_compact()
        reserve = freeable // 3
        pool.register_shrinker(
            PressureGatedPolicy(threshold=0.5, high_threshold=0.8, reserve_pages=reserve, monitor=monitor)
        )
        freed = pool.shrink()
        assert freed > 0
        # The reserve is kept to within one zspage (compaction frees whole zspages).
        assert pool.can_compact() >= reserve - 16
        assert pool.can_compact() <= reserve + 16
        assert all(pool.load(h) == data for h, data in survivors.items())


def test_cgroup_near_its_limit_releases_the_reserve_too(files: Files) -> None:
    _psi, cgroup, monitor = files
    write_cgroup_v2(cgroup, current=int(7.6 * GiB), limit=str(8 * GiB))  # 95 % of memory.max
    with Pool() as pool:
        fragment(pool, 20_000, seed=43)
        policy = PressureGatedPolicy(threshold=0.5, high_threshold=0.8, reserve_pages=10**6, monitor=monitor)
        pool.register_shrinker(policy)
        pool.shrink()
        assert pool.can_compact() == 0


def test_pressure_from_the_reclaimers_reading_and_direct_reclaim(files: Files) -> None:
    _psi, _cgroup, monitor = files
    with Pool() as pool:
        fragment(pool, 20_000, seed=44)
        policy = PressureGatedPolicy(threshold=0.5, monitor=monitor)
        pool.register_shrinker(policy)
        calm = monitor.read()
        assert calm.level < 0.5
        from zspool.shrinker import shrink_pool

        assert shrink_pool(pool, ShrinkReason.TICK, pressure=calm) == 0
        assert shrink_pool(pool, ShrinkReason.MEM_LIMIT, pages_wanted=1) > 0


def test_rejects_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="threshold"):
        PressureGatedPolicy(threshold=0.9, high_threshold=0.5)


def test_critical_notification_releases_the_reserve_but_medium_keeps_it(files: Files) -> None:
    from zspool.pressure.notify import Wakeup
    from zspool.shrinker import shrink_pool

    psi, _, monitor = files
    write_psi(psi, 6.0)  # level 0.6: between the thresholds, so the reserve is kept
    with Pool() as pool:
        fragment(pool, 40_000, seed=45)
        reserve = pool.can_compact() // 3
        pool.register_shrinker(
            PressureGatedPolicy(threshold=0.5, high_threshold=0.8, reserve_pages=reserve, monitor=monitor)
        )
        medium = Wakeup("usage_threshold", "medium", at=0.0)
        shrink_pool(pool, ShrinkReason.PRESSURE, pressure=monitor.read(), wakeup=medium)
        assert pool.can_compact() >= reserve - 16
        critical = Wakeup("vmpressure", "critical", at=0.0)
        assert shrink_pool(pool, ShrinkReason.PRESSURE, pressure=monitor.read(), wakeup=critical) > 0
        assert pool.can_compact() == 0
