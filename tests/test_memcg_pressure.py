"""The shrinker proven against the kernel: a real memory cgroup, a co-tenant, and no OOM kill.

The small version of ``asv_bench/standalone/cgroup_pressure.py`` (see
:mod:`zspool.memcg_trial` for the trial, :data:`zspool.memcg_trial.QUICK` for the sizes): a
112 MiB cgroup, a tenant holding a 48 MiB fragmented pool (30 % live), a co-tenant that then
needs 80 % of what the fragmentation holds. Without a shrinker the kernel OOM-kills someone;
``always`` and ``pressure-gated`` give the memory back in time; so does ``idle-only`` while
the tenant stays busy, through its critical-pressure escape. Six trials, each a few seconds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from zspool.memcg import PREFIX, MemoryCgroup
from zspool.memcg_trial import QUICK, TrialResult, run_trial

REPS = {"none": 1, "always": 1, "pressure-gated": 2, "idle-only-busy": 2}


@pytest.fixture(scope="module")
def trials(memcg_parent: Path) -> dict[str, list[TrialResult]]:
    """Every trial of this module, run once (the trials are the slow part)."""
    return {policy: [run_trial(policy, QUICK) for _ in range(n)] for policy, n in REPS.items()}


def test_without_a_shrinker_the_kernel_kills(trials: dict[str, list[TrialResult]]) -> None:
    for result in trials["none"]:
        assert result.killed, result
        assert result.peak_bytes >= result.limit_bytes - (4 << 20), result


@pytest.mark.parametrize("policy", ["always", "pressure-gated", "idle-only-busy"])
def test_policy_gives_the_memory_back_before_the_oom_killer(
    trials: dict[str, list[TrialResult]], policy: str
) -> None:
    for result in trials[policy]:
        assert not result.killed, result
        assert result.cotenant_exit == 0 and result.tenant_exit == 0, result
        assert result.pages_freed, result
        assert result.peak_bytes <= result.limit_bytes, result


def test_pressure_gated_does_no_work_while_busy_and_unpressed(
    trials: dict[str, list[TrialResult]],
) -> None:
    (always,) = trials["always"]
    assert always.busy_migrated, always
    for gated in trials["pressure-gated"]:
        assert gated.busy_migrated is not None and gated.busy_migrated <= 0.1 * always.busy_migrated
        assert gated.first_wakeup is not None and gated.first_wakeup["source"] == "usage_threshold"
        assert gated.latency_first_s is not None and gated.latency_s is not None


def test_idle_only_compacts_while_busy_only_under_critical_pressure(
    trials: dict[str, list[TrialResult]],
) -> None:
    for result in trials["idle-only-busy"]:
        assert result.busy_migrated == 0, result  # busy, and nobody needed the memory
        assert result.busy_migrated_pressure, result  # busy, and the OOM killer was near


def test_trials_leave_no_cgroup_behind(
    trials: dict[str, list[TrialResult]], memcg_parent: Path
) -> None:
    mine = f"{PREFIX}{os.getpid()}-"
    assert not [p.name for p in memcg_parent.iterdir() if p.name.startswith(mine)]


def test_leftovers_of_a_killed_run_are_removed_first(memcg_parent: Path) -> None:
    gone = subprocess.Popen(["sleep", "0"])
    gone.wait()
    leftover = memcg_parent / f"{PREFIX}{gone.pid}-0"
    leftover.mkdir()
    inside = MemoryCgroup(leftover).popen(["sleep", "60"])
    try:
        with MemoryCgroup.create(16 << 20, parent=memcg_parent) as cgroup:
            assert cgroup.path.exists() and not leftover.exists()
        assert inside.wait(5) == -9  # the leftover's process was killed with it
        assert not cgroup.path.exists()
    finally:
        if inside.poll() is None:
            inside.kill()
        inside.wait()
        if leftover.exists():
            MemoryCgroup(leftover).remove()
