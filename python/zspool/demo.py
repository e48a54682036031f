"""``zspool demo``: fragment a pool the way a cache does, then watch compaction give it back.

The run, step by step:

1. fill a pool with values whose sizes follow the memcached ETC trace (32..4096 bytes);
2. free a random part of them (70 % by default), as evictions and deletes do;
3. show the per-class fullness table (the kernel's debugfs ``classes`` view) and the RSS;
4. compact in budgeted steps, with a progress bar;
5. show what came back: pages, objects migrated, RSS before and after, time;
6. check every surviving object's bytes.

``--plot FILE.png`` draws the fullness before and after (needs ``pip install zspool[plot]``).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from zspool import ClassStats, Pool, PoolStats
from zspool.workload import PayloadSource, etc_sizes, rss_bytes

__all__ = ["DemoOptions", "run_demo", "format_class_table"]

MiB = 1024 * 1024
FULLNESS_LABELS = ("0%", "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "99%", "100%")


@dataclass(frozen=True)
class DemoOptions:
    objects: int = 400_000
    free_fraction: float = 0.7
    seed: int = 2015
    max_pages_per_zspage: int = 8
    plot: str | None = None
    #: Run the reclaimer with this shrinker policy instead of compacting by hand.
    policy: str | None = None
    policy_options: tuple[tuple[str, Any], ...] = ()
    interval_s: float = 0.1
    busy_s: float = 1.5
    idle_s: float = 3.0
    #: RSS budget in bytes for the pressure monitor (default: 5 % above the fragmented RSS).
    rss_budget: int | None = None
    #: Where to write; None means ``sys.stdout`` at the time of the run.
    out: TextIO | None = None


class Progress:
    """A one-line progress bar on a terminal; a single closing line elsewhere."""

    def __init__(self, label: str, total: int, out: TextIO) -> None:
        self.label, self.total, self.out = label, max(total, 1), out
        self.tty = out.isatty()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.tty and (now - self._last_draw > 0.05 or done >= self.total):
            self._last_draw = now
            fraction = min(done / self.total, 1.0)
            bar = "#" * int(fraction * 30)
            self.out.write(f"\r  {self.label:<28} [{bar:<30}] {fraction:6.1%}")
            self.out.flush()

    def finish(self, note: str = "") -> float:
        elapsed = time.perf_counter() - self.start
        self.update(self.total)
        prefix = "\r" if self.tty else ""
        self.out.write(f"{prefix}  {self.label:<28} done in {elapsed:6.2f} s {note}".rstrip() + " " * 20 + "\n")
        return elapsed


def format_class_table(rows: Sequence[ClassStats], *, only_used: bool = True) -> str:
    """The per-class table in the layout of ``/sys/kernel/debug/zsmalloc/<pool>/classes``:
    zspages per fullness group (10 % .. 100 %), objects and pages per class, and the pages
    compaction could free (``freeable``)."""
    header = (
        f"{'class':>5} {'size':>5} "
        + " ".join(f"{label:>5}" for label in FULLNESS_LABELS[1:])
        + f" {'obj_alloc':>10} {'obj_used':>9} {'pages':>7} {'pp/zs':>5} {'freeable':>8}"
    )
    lines = [header]
    totals = [0] * 16
    for row in rows:
        if only_used and row.zspages == 0:
            continue
        groups = list(row.fullness)[1:]
        lines.append(
            f"{row.index:>5} {row.size:>5} "
            + " ".join(f"{n:>5}" for n in groups)
            + f" {row.obj_allocated:>10} {row.obj_used:>9} {row.pages_used:>7}"
            + f" {row.pages_per_zspage:>5} {row.freeable:>8}"
        )
        for i, n in enumerate([*groups, row.obj_allocated, row.obj_used, row.pages_used, 0, row.freeable]):
            totals[i] += n
    lines.append(
        f"{'Total':>5} {'':>5} "
        + " ".join(f"{n:>5}" for n in totals[:11])
        + f" {totals[11]:>10} {totals[12]:>9} {totals[13]:>7} {'':>5} {totals[15]:>8}"
    )
    return "\n".join(lines)


def _summary(stats: PoolStats, rss: int, rss_base: int) -> str:
    payload = max(stats.payload_bytes, 1)
    return (
        f"  objects {stats.objects:,}  payload {stats.payload_bytes / MiB:,.1f} MiB  "
        f"pool pages {stats.pages_used:,} ({stats.mem_used_bytes / MiB:,.1f} MiB, "
        f"{stats.mem_used_bytes / payload:.2f} bytes per payload byte)\n"
        f"  RSS {rss / MiB:,.1f} MiB (+{(rss - rss_base) / MiB:,.1f} MiB since the pool was created)  "
        f"freeable by compaction: {stats.freeable_pages:,} pages ({stats.freeable_pages * 4096 / MiB:,.1f} MiB)"
    )


def _in_steps(items: Iterable[int], total: int, progress: Progress, action: Callable[[int], None]) -> None:
    for done, item in enumerate(items, 1):
        action(item)
        if done % 4096 == 0:
            progress.update(done)


@dataclass
class _Fragmented:
    pool: Pool
    handles: list[int]
    payloads: list[memoryview]
    survivors: list[int]
    rss_base: int


def _out(options: DemoOptions) -> TextIO:
    return options.out if options.out is not None else sys.stdout


def _fill_and_fragment(options: DemoOptions) -> _Fragmented:
    out = _out(options)
    rng = random.Random(options.seed)
    sizes = etc_sizes(options.objects, seed=options.seed)
    source = PayloadSource(seed=options.seed)
    payloads = [source.take(size) for size in sizes]
    out.write(
        f"zspool demo: {options.objects:,} values with memcached ETC sizes (32..4096 B, "
        f"mean {sum(sizes) / len(sizes):.0f} B), then free {options.free_fraction:.0%} at random\n\n"
    )
    rss_base = rss_bytes()
    pool = Pool(max_pages_per_zspage=options.max_pages_per_zspage, name="demo")
    handles: list[int] = [0] * options.objects
    progress = Progress("fill", options.objects, out)

    def store(i: int) -> None:
        handles[i] = pool.store(payloads[i])

    _in_steps(range(options.objects), options.objects, progress, store)
    progress.finish()

    victims = rng.sample(range(options.objects), int(options.objects * options.free_fraction))
    progress = Progress(f"free {options.free_fraction:.0%} at random", len(victims), out)
    _in_steps(victims, len(victims), progress, lambda i: pool.free(handles[i]))
    progress.finish()
    dead = set(victims)
    survivors = [i for i in range(options.objects) if i not in dead]
    return _Fragmented(pool, handles, payloads, survivors, rss_base)


def _show(title: str, state: _Fragmented, out: TextIO) -> tuple[list[ClassStats], PoolStats, int]:
    rows = state.pool.class_stats()
    stats = state.pool.stats()
    rss = rss_bytes()
    out.write(f"\n{title}\n")
    out.write(format_class_table(rows) + "\n")
    out.write(_summary(stats, rss, state.rss_base) + "\n\n")
    return rows, stats, rss


def _verify(state: _Fragmented, out: TextIO) -> int:
    progress = Progress("verify survivors", len(state.survivors), out)
    bad = 0

    def verify(i: int) -> None:
        nonlocal bad
        if state.pool.load(state.handles[i]) != state.payloads[i]:
            bad += 1

    _in_steps(state.survivors, len(state.survivors), progress, verify)
    progress.finish(f"({len(state.survivors):,} objects, {bad} corrupted)")
    return bad


def _verify_and_plot(
    state: _Fragmented, options: DemoOptions, before: list[ClassStats], after: list[ClassStats], out: TextIO
) -> int:
    """Check every survivor's bytes and draw the plot if asked; the exit status."""
    bad = _verify(state, out)
    if options.plot:
        plot_fullness(before, after, options.plot)
        out.write(f"\nplot written to {options.plot}\n")
    return 1 if bad else 0


def run_demo(options: DemoOptions) -> int:
    if options.policy:
        return run_policy_demo(options)
    out = _out(options)
    state = _fill_and_fragment(options)
    pool = state.pool
    with pool:
        before_rows, before, rss_before = _show(
            "Before compaction (zspages per fullness group, as in debugfs `classes`):", state, out
        )
        predicted = pool.can_compact()
        progress = Progress("compact", predicted, out)
        pages = objects = moved_bytes = 0
        started = time.perf_counter()
        step = max(predicted // 50, 64)
        while True:
            report = pool.compact(max_pages=step)
            pages += report.pages_freed
            objects += report.objects_migrated
            moved_bytes += report.bytes_migrated
            progress.update(pages)
            if report.stop_reason != "budget_reached":
                break
        elapsed = time.perf_counter() - started
        progress.finish()
        after_rows, after, rss_after = _show("After compaction:", state, out)

        mb_s = moved_bytes / MiB / elapsed if elapsed > 0 else float("inf")
        out.write(
            "What compaction gave back:\n"
            f"  pages freed        {pages:,} (can_compact predicted {predicted:,})\n"
            f"  objects migrated   {objects:,} ({moved_bytes / MiB:,.1f} MiB, {mb_s:,.0f} MiB/s)\n"
            f"  time               {elapsed * 1000:,.1f} ms\n"
            f"  RSS                {rss_before / MiB:,.1f} MiB -> {rss_after / MiB:,.1f} MiB "
            f"({(rss_before - rss_after) / MiB:,.1f} MiB returned to the OS)\n"
            f"  pool bytes/payload {before.mem_used_bytes / max(before.payload_bytes, 1):.3f} -> "
            f"{after.mem_used_bytes / max(after.payload_bytes, 1):.3f}\n"
        )
        return _verify_and_plot(state, options, before_rows, after_rows, out)


def run_policy_demo(options: DemoOptions) -> int:
    """The demo with a shrinker policy and the reclaimer deciding when to compact: a busy
    phase (writes), then an idle phase, with every reclaim round printed as it happens."""
    from zspool import Reclaimer
    from zspool.pressure import PressureMonitor, RssSource

    policy = options.policy
    if policy is None:
        raise ValueError("the policy demo needs a policy name (DemoOptions.policy)")
    out = _out(options)
    state = _fill_and_fragment(options)
    pool = state.pool
    with pool:
        before_rows, _before, rss_before = _show("Fragmented pool:", state, out)
        monitor_budget = options.rss_budget or int(rss_before * 1.05)
        monitor = PressureMonitor(rss=RssSource(monitor_budget))
        pool.register_shrinker(policy, **dict(options.policy_options))
        reading = monitor.read()
        out.write(
            f"policy {options.policy!r} registered; reclaimer ticks every {options.interval_s} s. "
            f"Pressure now: level {reading.level:.2f} ({reading.reason}; RSS budget {monitor_budget / MiB:,.0f} MiB)\n"
        )
        started = time.monotonic()
        printed = 0

        def print_events(reclaimer: Reclaimer) -> None:
            nonlocal printed
            events = list(reclaimer.events)
            for event in events[printed:]:
                level = "-" if event.pressure_level is None else f"{event.pressure_level:.2f} ({event.pressure_reason})"
                out.write(
                    f"  t={event.at - started:6.2f} s  {event.reason:<8} pressure {level:<18} "
                    f"freed {event.pages_freed:,} pages\n"
                )
            printed = len(events)

        rng = random.Random(options.seed + 1)
        source = PayloadSource(seed=options.seed + 2)
        with Reclaimer(pool, interval_s=options.interval_s, monitor=monitor) as reclaimer:
            out.write(f"\nbusy phase ({options.busy_s} s of stores and frees):\n")
            live: list[int] = []
            busy_until = time.monotonic() + options.busy_s
            while time.monotonic() < busy_until:
                for _ in range(256):
                    live.append(pool.store(source.take(rng.randrange(32, 1024))))
                    if len(live) > 2000:
                        pool.free(live.pop(rng.randrange(len(live))))
                print_events(reclaimer)
            out.write(f"idle phase (up to {options.idle_s} s):\n")
            idle_until = time.monotonic() + options.idle_s
            while time.monotonic() < idle_until and pool.can_compact() > 0:
                time.sleep(0.02)
                print_events(reclaimer)
            time.sleep(options.interval_s)
            print_events(reclaimer)
            for h in live:
                pool.free(h)
        if printed == 0:
            out.write("  (the policy never let the pool compact)\n")
        shrinker = pool.shrinkers[0]
        after_rows, _after, rss_after = _show("After the trace:", state, out)
        out.write(
            f"policy {options.policy!r}: {shrinker.stats.pages_freed:,} pages freed in "
            f"{shrinker.stats.scan_calls} scans ({shrinker.stats.time_s * 1000:.1f} ms), "
            f"{shrinker.stats.errors} errors; RSS {rss_before / MiB:,.1f} -> {rss_after / MiB:,.1f} MiB; "
            f"reclaimer: {reclaimer.stats.ticks} ticks, {reclaimer.stats.pressure_events} pressure events\n"
        )
        return _verify_and_plot(state, options, before_rows, after_rows, out)


def plot_fullness(before: Sequence[ClassStats], after: Sequence[ClassStats], path: str) -> None:
    """Two panels: zspages per fullness group, and pages per class, before and after."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise SystemExit("--plot needs matplotlib: pip install 'zspool[plot]'") from exc

    fig, (groups_ax, classes_ax) = plt.subplots(2, 1, figsize=(11, 8))
    width = 0.4
    xs = range(len(FULLNESS_LABELS))
    for offset, rows, label in ((-width / 2, before, "before"), (width / 2, after, "after")):
        totals = [sum(row.fullness[g] for row in rows) for g in range(len(FULLNESS_LABELS))]
        groups_ax.bar([x + offset for x in xs], totals, width, label=label)
    groups_ax.set_xticks(list(xs), FULLNESS_LABELS)
    groups_ax.set_xlabel("fullness group (objects in use / objects per zspage)")
    groups_ax.set_ylabel("zspages")
    groups_ax.legend()
    groups_ax.set_title("zspool: zspages per fullness group")

    sizes = [row.size for row in before]
    classes_ax.plot(sizes, [row.pages_used for row in before], label="pages used, before")
    classes_ax.plot(sizes, [row.pages_used for row in after], label="pages used, after")
    classes_ax.set_xlabel("class size (bytes)")
    classes_ax.set_ylabel("pages")
    classes_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
