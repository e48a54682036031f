"""One system through the whole workload, in this process (the child the runner starts).

Phases (userspace-peers-notes section 6.3):

    P0  start, settle                                  R0
    P1  fill N ETC values, batches of 1000             R1, payload P1
    P2  delete 70 % at random                          R2 (+2 s), R2' (+decay wait)
        idle probe: paced reads of live keys           idle p50/p99/max
    P3  reclaim with the system's own lever, probe     R3, reclaim time and CPU, probe during
        running; poll RSS until stable within 1 %      reclaim
        for the stable window, or the timeout
    P4  size-shifted refill: 0.7 N / 3 new keys with   R4
        3x larger values (clipped to 9216 B)
    P5  verify every live key against its expected bytes
"""

from __future__ import annotations

import array
import gc
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from systems import System

from zspool.workload import PayloadSource, etc_sizes, shifted_sizes

BATCH = 1000


@dataclass
class Config:
    n: int
    seed: int = 42
    free_fraction: float = 0.7
    settle_s: float = 2.0
    decay_wait_s: float = 15.0
    idle_probe_s: float = 5.0
    probe_rate: float = 2000.0
    reclaim_timeout_s: float = 300.0
    stable_window_s: float = 10.0


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_of(pid: int) -> float:
    """utime + stime of the whole process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Probe(threading.Thread):
    """Open-loop reads of random live keys at a fixed rate; records (start time, latency)."""

    def __init__(self, system: System, live: array.array, rate: float, seed: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.system, self.live, self.rate = system, live, rate
        self.rng = random.Random(seed)
        # Preallocated (and touched) before R0, so recording never grows the RSS we measure.
        self.capacity = int(rate * seconds)
        self.starts = array.array("d", [0.0]) * self.capacity
        self.lats = array.array("d", [0.0]) * self.capacity
        self.count = 0
        self.halt = threading.Event()

    def run(self) -> None:
        get, live, rng, period = self.system.probe_get, self.live, self.rng, 1.0 / self.rate
        next_at = time.perf_counter()
        while not self.halt.is_set():
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            i = live[rng.randrange(len(live))]
            t0 = time.perf_counter()
            get(i)
            t1 = time.perf_counter()
            if self.count < self.capacity:
                self.starts[self.count], self.lats[self.count] = t0, t1 - t0
                self.count += 1
            next_at += period
            if next_at < t1 - 1.0:  # fell more than a second behind: don't burst to catch up
                next_at = t1

    def stop(self) -> None:
        self.halt.set()
        self.join()

    def between(self, start: float, end: float) -> list[float]:
        return [self.lats[k] for k in range(self.count) if start <= self.starts[k] < end]


def latency_summary(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"samples": 0}
    lat = sorted(lat)

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p))] * 1e6

    return {"samples": len(lat), "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": lat[-1] * 1e6}


def run(system: System, cfg: Config) -> dict[str, Any]:
    n = cfg.n
    refill = int(n * cfg.free_fraction / 3)
    total = n + refill
    # Everything the harness needs is built before R0 and kept in flat arrays.
    sizes = array.array("H", etc_sizes(n, seed=cfg.seed) + shifted_sizes(refill, seed=cfg.seed + 1))
    source = PayloadSource(seed=cfg.seed, max_size=max(sizes))
    offsets = array.array("I", (source.offset() for _ in range(total)))
    victims = array.array("I", random.Random(cfg.seed + 2).sample(range(n), int(n * cfg.free_fraction)))
    dead = bytearray(total)
    for i in victims:
        dead[i] = 1
    survivors = array.array("I", (i for i in range(n) if not dead[i]))
    fill_payload = sum(sizes[:n])
    live_payload = sum(sizes[i] for i in survivors)
    refill_payload = sum(sizes[n:])
    system.total_keys, system.fill_payload = total, fill_payload
    out: dict[str, Any] = {"system": system.name, "lever": system.lever_name, "n": n, "refill_keys": refill,
                           "fill_payload": fill_payload, "live_payload": live_payload,
                           "refill_payload": refill_payload, "phases": {}, "extras": {}}

    def values(ids: range | array.array) -> list[memoryview]:
        return [source.at(offsets[i], sizes[i]) for i in ids]

    def mark(phase: str) -> None:
        gc.collect()
        out["phases"][phase] = rss_of(system.pid())
        out["extras"][phase] = system.extras()

    probe = Probe(system, survivors, cfg.probe_rate, cfg.seed + 3, cfg.idle_probe_s + cfg.reclaim_timeout_s + 30)
    system.start()
    pid = system.pid()
    out["versions"] = system.versions()
    time.sleep(cfg.settle_s)
    mark("P0 start")

    t0, c0 = time.perf_counter(), cpu_of(pid)
    for start in range(0, n, BATCH):
        ids = range(start, min(n, start + BATCH))
        system.set_many(ids, values(ids))
    out["fill_s"], out["fill_cpu_s"] = time.perf_counter() - t0, cpu_of(pid) - c0
    time.sleep(cfg.settle_s)
    mark("P1 fill")

    t0 = time.perf_counter()
    for start in range(0, len(victims), BATCH):
        system.delete_many(victims[start : start + BATCH])
    out["delete_s"] = time.perf_counter() - t0
    time.sleep(cfg.settle_s)
    mark("P2 delete")
    time.sleep(max(0.0, cfg.decay_wait_s - cfg.settle_s))
    mark("P2' delete+decay")

    probe.start()
    time.sleep(cfg.idle_probe_s)
    lever_start = time.perf_counter()
    cpu_start = cpu_of(pid)
    lever = system.lever()
    lever_end = time.perf_counter()
    polls = [(lever_end, rss_of(pid), cpu_of(pid))]
    interval = 1.0 if cfg.stable_window_s >= 30 else 0.1
    timed_out = False
    while True:
        time.sleep(interval)
        now = time.perf_counter()
        polls.append((now, rss_of(pid), cpu_of(pid)))
        window = [r for t, r, _ in polls if t >= now - cfg.stable_window_s]
        if now - lever_end >= cfg.stable_window_s and (max(window) - min(window)) <= 0.01 * max(window):
            break
        if now - lever_start >= cfg.reclaim_timeout_s:
            timed_out = True
            break
    final = polls[-1][1]
    # Converged at the first poll after which RSS stayed within 1 % of its final value.
    converged = polls[-1]
    for t, r, c in reversed(polls):
        if abs(r - final) > 0.01 * final:
            break
        converged = (t, r, c)
    if timed_out:
        converged = polls[-1]
    reclaim_end = max(lever_end, converged[0])
    probe.stop()
    idle = probe.between(0.0, lever_start)
    during = probe.between(lever_start, reclaim_end)
    out["lever_result"] = lever
    out["reclaim_s"] = reclaim_end - lever_start
    out["reclaim_timed_out"] = timed_out
    if system.in_process:
        out["reclaim_cpu_s"] = lever.get("lever_cpu_s", 0.0)
    else:
        out["reclaim_cpu_s"] = (converged[2] if not timed_out else polls[-1][2]) - cpu_start
    out["latency_idle"] = latency_summary(idle)
    out["latency_reclaim"] = latency_summary(during)
    out["rss_polls"] = [(t - lever_start, r) for t, r, _ in polls[:: max(1, len(polls) // 200)]]
    mark("P3 reclaim")
    system.after_reclaim()

    t0 = time.perf_counter()
    for start in range(n, total, BATCH):
        ids = range(start, min(total, start + BATCH))
        system.set_many(ids, values(ids))
    out["refill_s"] = time.perf_counter() - t0
    time.sleep(cfg.settle_s)
    mark("P4 refill")

    live = array.array("I", survivors)
    live.extend(range(n, total))
    ok = 0
    for start in range(0, len(live), BATCH):
        ids = live[start : start + BATCH]
        for i, got in zip(ids, system.get_many(ids)):
            ok += got is not None and got == source.at(offsets[i], sizes[i])
    out["verified"], out["verify_total"] = ok, len(live)
    system.stop()
    return out
