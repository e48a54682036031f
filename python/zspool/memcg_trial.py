"""One trial of a shrinker policy under a real memory limit, with a neighbour that needs it.

The question the 2015 thread asked of a zsmalloc shrinker: when someone else in the same
memory cgroup needs the memory that fragmentation holds, is it given back before the
kernel's OOM killer acts? :func:`run_trial` answers it for one policy:

1. A v1 memory cgroup (:class:`~zspool.memcg.MemoryCgroup`) limited to ``limit_mib``, no
   swap.
2. The **tenant**: a zspool process in it holding a fragmented pool (``pool_mib`` of
   resident pages, ``live_fraction`` of them live: ETC-sized values, the rest freed at
   random), with a :class:`~zspool.Reclaimer` (every kernel notification the cgroup
   offers, plus a tick every ``tick_s``) and the policy.
3. **Phase A, busy, no memory needed** (``busy_s``): the tenant churns (a store and a free
   of a random live value, ``churn_ops_per_s``); nobody else asks for memory. The objects
   migrated here are the compaction work done while busy that nobody needed.
4. **Phase B, the co-tenant**: a second process in the cgroup maps and touches memory in
   ``step_mib`` steps every ``step_s`` until it holds what was free at the start plus
   ``need_fraction`` of what the fragmentation holds (freeable pages), its interpreter
   included. Without compaction
   that cannot fit: the kernel OOM-kills someone. The tenant is idle in phase B, except
   with ``idle-only-busy`` (the ``idle-only`` policy while the tenant keeps churning).

Recorded: OOM kills (``memory.oom_control`` ``oom_kill``), ``memory.failcnt``, each
process's exit status, peak usage (``memory.max_usage_in_bytes`` over phase B), cgroup
usage sampled every ``sample_s`` (for the chart), the first kernel notification the
reclaimer saw, and the time from it to the end of the first reclaim round that returned
pages, and to the end of the first ``scan_objects`` call that returned some
(``MADV_DONTNEED`` has uncharged them from the cgroup by then).

The tenant is this module run as a program (``python -m zspool.memcg_trial tenant ...``),
talking to the driver in JSON lines; the co-tenant is :data:`COTENANT`.
"""

from __future__ import annotations

import contextlib
import json
import random
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from zspool.pressure.notify import DEFAULT_USAGE_THRESHOLDS

__all__ = ["COTENANT", "POLICIES", "QUICK", "TrialConfig", "TrialResult", "run_trial"]

#: The policies a trial can run; ``idle-only-busy`` is idle-only with the tenant kept busy.
POLICIES = ("none", "always", "idle-only", "pressure-gated", "idle-only-busy")

MIB = 1 << 20


@dataclass(frozen=True)
class TrialConfig:
    """Sizes in MiB, times in seconds; see the module docstring for each phase."""

    limit_mib: int = 512
    pool_mib: int = 300
    live_fraction: float = 0.3
    busy_s: float = 1.0
    churn_ops_per_s: int = 20_000
    tick_s: float = 0.25
    step_mib: int = 8
    step_s: float = 0.02
    need_fraction: float = 0.8
    sample_s: float = 0.005
    timeout_s: float = 60.0
    seed: int = 0

    def policy_options(self, policy: str) -> dict[str, Any]:
        """The options each policy runs with in a trial (documented in docs/POLICIES.md)."""
        if policy.startswith("idle-only"):
            return {"idle_s": 0.2}
        if policy == "pressure-gated":
            # Gate on the kernel's early warning (the first usage threshold) rather than on
            # the tenant's own steady footprint (~60 % of the limit); keep the reserve up to
            # the critical threshold.
            (medium, _), (critical, _) = sorted(DEFAULT_USAGE_THRESHOLDS.items())
            return {"threshold": medium, "high_threshold": critical, "reserve_pages": 256}
        return {}


#: The small configuration the test suite runs (a few seconds a trial).
QUICK = TrialConfig(limit_mib=112, pool_mib=48, busy_s=0.3, tick_s=0.1, step_mib=3, timeout_s=20)


@dataclass
class TrialResult:
    """What one trial measured. Bytes, seconds (``time.monotonic()``), objects."""

    policy: str
    oom_kills: int
    failcnt: int
    tenant_exit: int | None
    cotenant_exit: int | None
    peak_bytes: int
    limit_bytes: int
    cotenant_target_bytes: int
    busy_migrated: int | None
    busy_migrated_pressure: int | None
    latency_first_s: float | None
    latency_s: float | None
    first_wakeup: dict[str, Any] | None
    pages_freed: int | None
    started_at: float
    cotenant_started_at: float
    cotenant_ended_at: float
    samples: list[tuple[float, int]] = field(repr=False, default_factory=list)

    @property
    def killed(self) -> bool:
        """Somebody was OOM-killed (the counter, or a process ended by SIGKILL)."""
        return self.oom_kills > 0 or -9 in (self.tenant_exit, self.cotenant_exit)

    @property
    def cotenant_failed(self) -> bool:
        """The co-tenant did not get its memory (killed, or exited with an error)."""
        return self.cotenant_exit != 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The co-tenant: grows to argv[1] bytes resident (its interpreter's own pages included),
#: mapping and touching argv[2] bytes at a time, argv[3] seconds apart. Standard library
#: only, run with ``python -I``, so its own footprint is an interpreter's and no more.
COTENANT = """\
import ctypes, mmap, os, sys, time
target, step, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with open("/proc/self/statm") as f:
    resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
size = max(step, target - resident)
area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(area))
for offset in range(0, size, step):
    ctypes.memset(base + offset, 1, min(step, size - offset))
    time.sleep(pause)
"""


# ----------------------------------------------------------------- the driver


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # the tenant is gone; its exit status says why


def _expect(proc: subprocess.Popen[str], event: str, timeout_s: float) -> dict[str, Any] | None:
    """The tenant's next ``event`` line, or None if it exited (or timed out) first."""
    stdout: IO[str] | None = proc.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = stdout.readline()
        if not line:
            return None
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == event:
            return message
    return None


class _Sampler(threading.Thread):
    """Reads the cgroup's usage every ``period_s`` into ``samples`` until stopped."""

    def __init__(self, path: str, period_s: float) -> None:
        super().__init__(name="memcg-sampler", daemon=True)
        self.path, self.period_s = path, period_s
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with open(self.path, "rb", buffering=0) as f:
            while not self.done.wait(self.period_s):
                try:
                    self.samples.append((time.monotonic(), int(f.read() or 0)))
                    f.seek(0)
                except (OSError, ValueError):
                    return  # the cgroup is going away

    def stop(self) -> list[tuple[float, int]]:
        self.done.set()
        self.join()
        return self.samples


def run_trial(policy: str, config: TrialConfig = TrialConfig()) -> TrialResult:
    """Run one trial (see the module docstring) in a fresh cgroup, removed afterwards.

    Raises ValueError for an unknown policy and OSError if no writable v1 memory cgroup
    exists (see :func:`zspool.memcg.writable_memory_cgroup_parent`).
    """
    from zspool.memcg import MemoryCgroup

    if policy not in POLICIES:
        raise ValueError(f"unknown trial policy {policy!r}; one of {POLICIES}")
    program = [sys.executable, "-m", "zspool.memcg_trial"]
    with MemoryCgroup.create(config.limit_mib * MIB) as cgroup:
        procs: list[subprocess.Popen[str]] = []
        sampler = _Sampler(str(cgroup.path / "memory.usage_in_bytes"), config.sample_s)
        try:
            started = time.monotonic()
            tenant = cgroup.popen(
                [*program, "tenant", policy, json.dumps(asdict(config))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            procs.append(tenant)
            ready = _expect(tenant, "ready", config.timeout_s)
            if ready is None:
                raise RuntimeError(f"the {policy} tenant did not start (exit {tenant.poll()})")
            sampler.start()
            usage_ready = cgroup.usage_bytes
            busy = _expect(tenant, "busy_done", config.timeout_s)
            target = config.limit_mib * MIB - usage_ready + int(config.need_fraction * ready["freeable_bytes"])
            cgroup.reset_peak()
            cotenant_started = time.monotonic()
            cotenant = cgroup.popen(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    COTENANT,
                    str(target),
                    str(config.step_mib * MIB),
                    str(config.step_s),
                ],
                stdout=subprocess.DEVNULL,
            )
            procs.append(cotenant)
            try:
                cotenant.wait(config.timeout_s)
            except subprocess.TimeoutExpired:
                cotenant.kill()
                cotenant.wait()
            cotenant_ended = time.monotonic()
            _send(tenant, "stop")
            done = _expect(tenant, "done", config.timeout_s)
            try:
                tenant.wait(config.timeout_s)
            except subprocess.TimeoutExpired:
                tenant.kill()
                tenant.wait()
            samples = sampler.stop()
            return TrialResult(
                policy=policy,
                oom_kills=cgroup.oom_kills,
                failcnt=cgroup.failcnt,
                tenant_exit=tenant.returncode,
                cotenant_exit=cotenant.returncode,
                peak_bytes=cgroup.max_usage_bytes,
                limit_bytes=config.limit_mib * MIB,
                cotenant_target_bytes=target,
                busy_migrated=None if busy is None else busy["migrated"],
                busy_migrated_pressure=None if done is None else done["busy_migrated_pressure"],
                latency_first_s=None if done is None else done["latency_first_s"],
                latency_s=None if done is None else done["latency_s"],
                first_wakeup=None if done is None else done["first_wakeup"],
                pages_freed=None if done is None else done["pages_freed"],
                started_at=started,
                cotenant_started_at=cotenant_started,
                cotenant_ended_at=cotenant_ended,
                samples=samples,
            )
        finally:
            if sampler.is_alive():
                sampler.stop()
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        with contextlib.suppress(BrokenPipeError):
                            stream.close()  # a killed tenant leaves unread input behind


# ----------------------------------------------------------------- the tenant


def _emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def _churn(pool: Any, live: list[int], rng: random.Random, ops_per_s: int, until: Any) -> None:
    """Store a value and free a random live one, ``ops_per_s`` operations a second, until
    ``until()`` is true (checked every 64 operations)."""
    from zspool.workload import PayloadSource, etc_sizes

    source = PayloadSource(seed=rng.randrange(1 << 30))
    sizes = etc_sizes(4096, seed=rng.randrange(1 << 30))
    ops, started = 0, time.monotonic()
    while not until():
        if ops > (time.monotonic() - started) * ops_per_s:
            time.sleep(0.001)
            continue
        for size in rng.sample(sizes, 32):
            live.append(pool.store(source.take(size)))
            victim = rng.randrange(len(live))
            live[victim] = live[-1]
            pool.free(live.pop())
        ops += 64


class _FirstReturn:
    """Wraps a policy to note when a ``scan_objects`` call first returned pages."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.returned_at: list[float] = []

    def count_objects(self, pool: Any, sc: Any) -> int:
        count: int = self.policy.count_objects(pool, sc)
        return count

    def scan_objects(self, pool: Any, sc: Any) -> int:
        freed: int = self.policy.scan_objects(pool, sc)
        if freed > 0:
            self.returned_at.append(time.monotonic())
        return freed


def _tenant(policy: str, config: TrialConfig) -> None:
    from zspool import PAGE_SIZE, Pool, Reclaimer
    from zspool.shrinker import load_policy
    from zspool.workload import PayloadSource, etc_sizes

    rng = random.Random(config.seed)
    pool = Pool(name=f"trial-{policy}")
    source = PayloadSource(seed=config.seed)
    live: list[int] = []
    while pool.stats().pages_used * PAGE_SIZE < config.pool_mib * MIB:
        for size in etc_sizes(20_000, seed=rng.randrange(1 << 30)):
            live.append(pool.store(source.take(size)))
    rng.shuffle(live)
    keep = int(len(live) * config.live_fraction)
    for handle in live[keep:]:
        pool.free(handle)
    del live[keep:]
    timed = None
    if policy != "none":
        name = policy.removesuffix("-busy")
        timed = _FirstReturn(load_policy(name, **config.policy_options(name)))
        pool.register_shrinker(timed, name=name)
    reclaimer = Reclaimer(pool, interval_s=config.tick_s).start()
    stats = pool.stats()
    _emit(
        event="ready",
        pages_used=stats.pages_used,
        freeable_bytes=pool.can_compact() * PAGE_SIZE,
        notifiers=[repr(n) for n in reclaimer.notifiers],
    )

    busy_until = time.monotonic() + config.busy_s
    before = pool.stats().objects_migrated
    _churn(pool, live, rng, config.churn_ops_per_s, lambda: time.monotonic() >= busy_until)
    _emit(event="busy_done", migrated=pool.stats().objects_migrated - before)

    before = pool.stats().objects_migrated
    if policy.endswith("-busy"):
        _churn(
            pool,
            live,
            rng,
            config.churn_ops_per_s,
            lambda: bool(select.select([sys.stdin], [], [], 0)[0]),
        )
    sys.stdin.readline()
    busy_migrated_pressure = pool.stats().objects_migrated - before if policy.endswith("-busy") else 0
    reclaimer.stop()

    wakeups = list(reclaimer.wakeups)
    first = wakeups[0] if wakeups else None
    latency = latency_first = None
    if first is not None:
        rounds = [e.at for e in reclaimer.events if e.at >= first.at]
        batches = [at for at in (timed.returned_at if timed else []) if at >= first.at]
        latency = rounds[0] - first.at if rounds else None
        latency_first = batches[0] - first.at if batches else None
    _emit(
        event="done",
        busy_migrated_pressure=busy_migrated_pressure,
        first_wakeup=None if first is None else asdict(first),
        latency_first_s=latency_first,
        latency_s=latency,
        pages_freed=reclaimer.stats.pages_freed,
        wakeups=len(wakeups),
    )
    pool.close()


# -------------------------------------------------------------- the co-tenant


def main(argv: list[str]) -> None:
    role, *args = argv
    if role == "tenant":
        _tenant(args[0], TrialConfig(**json.loads(args[1])))
    else:
        raise SystemExit(f"usage: python -m zspool.memcg_trial tenant POLICY CONFIG: not {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
