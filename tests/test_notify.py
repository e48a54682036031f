"""zspool.pressure.notify: the kernel's memory-pressure notifications, and the reclaimer waking on them.

cgroup v1 runs live: each test creates its own memory cgroup (zspool.memcg, removed
afterwards) and a child process that fills it. cgroup v2 ``memory.events`` runs on a copy
of a real-format file, changed as the kernel changes it (inotify sees the same
IN_MODIFY).
"""

from __future__ import annotations

import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from zspool import Pool, Reclaimer
from zspool.memcg import MemoryCgroup
from zspool.pressure.notify import (
    LEVELS,
    MemoryEventsNotifier,
    Notifier,
    UsageThresholdNotifier,
    VmpressureNotifier,
    Wakeup,
    cgroup_notifiers,
    parse_memory_events,
)
from zspool.pressure import CgroupDir
from zspool.shrinker import ShrinkControl, ShrinkReason

DATA = Path(__file__).parent / "data" / "pressure"
MIB = 1 << 20

#: A child that maps and touches argv[1] MiB, says so, then waits for stdin to close.
TOUCH = (
    "import mmap, sys\n"
    "n = int(sys.argv[1]) << 20\n"
    "m = mmap.mmap(-1, n)\n"
    "for i in range(0, n, 4096): m[i] = 1\n"
    "print('touched', flush=True)\n"
    "sys.stdin.read()\n"
)


def fill(cgroup: MemoryCgroup, mib: int) -> subprocess.Popen[str]:
    return cgroup.popen(
        [sys.executable, "-c", TOUCH, str(mib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def finish(child: subprocess.Popen[str]) -> int:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.close()
    child.stdout.close()
    return child.wait(10)


def ready(notifier: Notifier, timeout_s: float) -> Wakeup | None:
    """Poll ``notifier`` until it carries a wake-up or ``timeout_s`` passes."""
    poller = select.poll()
    poller.register(notifier.fileno(), notifier.poll_events)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if poller.poll(int(left * 1000) + 1):
            wakeup = notifier.consume(time.monotonic())
            if wakeup is not None:
                return wakeup
    return None


def test_v1_usage_threshold_reports_the_upward_crossing_only(memcg_parent: Path) -> None:
    with (
        MemoryCgroup.create(64 * MIB, parent=memcg_parent) as cgroup,
        UsageThresholdNotifier(cgroup.path, 32 * MIB, "medium") as notifier,
    ):
        child = fill(cgroup, 40)
        assert child.stdout is not None and child.stdout.readline() == "touched\n"
        wakeup = ready(notifier, 5.0)
        assert wakeup is not None
        assert (wakeup.source, wakeup.level) == ("usage_threshold", "medium")
        assert notifier.usage_bytes() >= 32 * MIB
        assert finish(child) == 0
        # The kernel signals the downward crossing too; it is not pressure.
        assert ready(notifier, 1.0) is None
        assert notifier.usage_bytes() < 32 * MIB


def test_v1_vmpressure_fires_every_level_before_the_oom_kill(memcg_parent: Path) -> None:
    with MemoryCgroup.create(48 * MIB, parent=memcg_parent) as cgroup:
        notifiers = [VmpressureNotifier(cgroup.path, level) for level in LEVELS]
        try:
            child = fill(cgroup, 96)  # twice the limit, no swap: the OOM killer ends it
            assert child.wait(20) == -9
            assert child.stdout is not None and child.stdin is not None
            child.stdout.close()
            child.stdin.close()
            assert cgroup.oom_kills == 1
            seen = [ready(n, 2.0) for n in notifiers]
            assert [w.level if w else None for w in seen] == list(LEVELS)
            assert all(w is not None and w.source == "vmpressure" for w in seen)
            assert seen[2] is not None and seen[2].critical
        finally:
            for n in notifiers:
                n.close()


def test_v1_cgroup_notifiers_register_levels_and_thresholds(memcg_parent: Path) -> None:
    with MemoryCgroup.create(64 * MIB, parent=memcg_parent) as cgroup:
        found, missing = cgroup_notifiers(CgroupDir(str(cgroup.path), 1))
        try:
            assert missing == []
            kinds = sorted((type(n).__name__, getattr(n, "level", None)) for n in found)
            assert kinds == sorted(
                [("VmpressureNotifier", level) for level in LEVELS]
                + [("UsageThresholdNotifier", "medium"), ("UsageThresholdNotifier", "critical")]
            )
            thresholds = {
                n.level: n.threshold_bytes for n in found if isinstance(n, UsageThresholdNotifier)
            }
            assert thresholds == {"medium": int(64 * MIB * 0.75), "critical": int(64 * MIB * 0.85)}
        finally:
            for n in found:
                n.close()


class Recording:
    """A policy that compacts nothing and remembers what it was told."""

    def __init__(self) -> None:
        self.seen: list[ShrinkControl] = []

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        self.seen.append(sc)
        return 0

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        return 0


def test_reclaimer_wakes_on_the_cgroup_threshold_and_tells_the_policy(memcg_parent: Path) -> None:
    with MemoryCgroup.create(100 * MIB, parent=memcg_parent) as cgroup:
        found, _ = cgroup_notifiers(CgroupDir(str(cgroup.path), 1), vmpressure_levels=())
        policy = Recording()
        try:
            with Pool(name="notify") as pool:
                pool.register_shrinker(policy)
                with Reclaimer(pool, interval_s=60, notifiers=found, psi_trigger=None) as reclaimer:
                    assert reclaimer.notifiers == tuple(found)
                    child = fill(cgroup, 78)  # with the interpreter: past 75 %, short of 85 %
                    assert child.stdout is not None and child.stdout.readline() == "touched\n"
                    deadline = time.monotonic() + 5
                    while not policy.seen and time.monotonic() < deadline:
                        time.sleep(0.01)
                    assert finish(child) == 0
                assert reclaimer.stats.pressure_events >= 1
                assert reclaimer.wakeups[0].source == "usage_threshold"
                sc = policy.seen[0]
                assert sc.reason is ShrinkReason.PRESSURE
                assert sc.wakeup == reclaimer.wakeups[0] and sc.wakeup.level == "medium"
                assert not sc.critical
        finally:
            for n in found:
                n.close()


# ------------------------------------------------------------------ cgroup v2 fixtures


def test_parse_memory_events_fixture_and_errors() -> None:
    counters = parse_memory_events((DATA / "cgroup_v2" / "memory.events").read_text())
    assert counters == {
        "low": 0,
        "high": 12,
        "max": 3,
        "oom": 1,
        "oom_kill": 1,
        "oom_group_kill": 0,
    }
    with pytest.raises(ValueError, match=r"memory.events:2: expected 'name count'"):
        parse_memory_events("low 0\nhigh twelve\n")


@pytest.mark.parametrize(
    ("change", "level"),
    [
        ({"high": 13}, "medium"),
        ({"max": 4}, "critical"),
        ({"oom_kill": 2}, "critical"),
        ({"low": 5}, None),
    ],
)
def test_v2_memory_events_change_is_seen_through_inotify(
    tmp_path: Path, change: dict, level: str | None
) -> None:
    shutil.copytree(DATA / "cgroup_v2", tmp_path / "cg")
    events = tmp_path / "cg" / "memory.events"
    with MemoryEventsNotifier(tmp_path / "cg") as notifier:
        assert ready(notifier, 0.05) is None  # nothing changed yet
        counters = parse_memory_events(events.read_text()) | change
        events.write_text("".join(f"{k} {v}\n" for k, v in counters.items()))
        wakeup = ready(notifier, 2.0 if level else 0.3)
        assert (wakeup.level if wakeup else None) == level
        if wakeup is not None:
            assert wakeup.source == "memory_events"
            assert wakeup.detail == ", ".join(f"{k} +1" for k in change)


def test_v2_cgroup_notifiers_on_a_fixture(tmp_path: Path) -> None:
    shutil.copytree(DATA / "cgroup_v2", tmp_path / "cg")
    found, missing = cgroup_notifiers(CgroupDir(str(tmp_path / "cg"), 2), psi_trigger=None)
    assert [type(n) for n in found] == [MemoryEventsNotifier] and missing == []
    found[0].close()
    (tmp_path / "cg" / "memory.events").unlink()
    found, missing = cgroup_notifiers(CgroupDir(str(tmp_path / "cg"), 2), psi_trigger=None)
    assert found == [] and "memory.events" in missing[0].reason


def test_wakeup_severity_order_and_critical() -> None:
    low, medium, critical = (Wakeup("vmpressure", level, at=1.0) for level in LEVELS)
    assert max([medium, critical, low]) is critical and critical.critical and not medium.critical
    assert max(Wakeup("psi", "medium", 2.0), Wakeup("usage_threshold", "medium", 1.0)).at == 1.0


def test_unclosed_notifier_warns(tmp_path: Path) -> None:
    shutil.copytree(DATA / "cgroup_v2", tmp_path / "cg")
    notifier = MemoryEventsNotifier(tmp_path / "cg")
    with pytest.warns(ResourceWarning, match="unclosed MemoryEventsNotifier"):
        del notifier


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vmpressure level"):
        VmpressureNotifier(tmp_path, "severe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold_bytes must be > 0"):
        UsageThresholdNotifier(tmp_path, 0)
