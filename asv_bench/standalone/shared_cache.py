"""zspool.SharedCache next to zspool.Cache, lmdb, diskcache, memcached and Valkey (issue 16).

**Speed.** `--entries` N (default 1,000,000) 200-byte random values under 11-byte keys
``b"k%010d"``, then `get` and `set` (an overwrite with another 200-byte value) of keys picked
at random among the N (seeded), from 1 process and from 2 processes at once: forked workers
that wait on a barrier before each timed pass; a pass's time runs from the first worker's
start to the last worker's end, so 2 processes' ns per operation is their aggregate (total
operations / wall time). Wall time, not CPU time: a server's work happens in another process.
Best of 3 passes, after an untimed pass in the in-process stores (a forked worker's first
writes copy pages). The stores, each in a child process of its own in every round, filled
there (lmdb's and diskcache's files: in the first round only, then kept; their fill takes
minutes at a million entries):

- ``zspool.SharedCache`` in a file under /dev/shm (the workers inherit it through fork), its
  ``maxbytes`` 1.5 times the data set's stored bytes;
- the control for its 2-process rows, "SharedCache, a file per process": the same, but each
  of the two timing workers has a file of its own (filled alike), so nothing is shared: what
  this machine allows such a workload from 2 processes (its fill column fills both files);
- ``zspool.Cache``, in-process (each forked worker reads and writes its own copy);
- lmdb and diskcache, their files on tmpfs (/dev/shm) and lmdb with ``sync=False``, so that
  no row touches a disk: a read transaction per `get`, a write transaction per `set`;
  every worker opens its own environment / cache after the fork, as both libraries require;
- memcached (pymemcache) and Valkey (valkey-py), Debian's servers started by this script on a
  unix socket in a scratch directory and stopped by PID; every worker opens its own
  connection. Servers and diskcache (and lmdb's set) take 10-100 times longer per operation,
  so they are timed on the first `--slow-ops` of the same random keys (default 20,000).

`--rounds` rounds interleave the stores; every ratio is computed within one round, and the
table gives the median and min-max over rounds.

**Memory.** 4 worker processes holding the same N entries (each has read every key): 4
private ``zspool.Cache``s against one ``SharedCache`` that worker 0 creates and fills and
workers 1-3 open by path. Counted: the sum of the 4 workers' ``Pss`` from
``/proc/PID/smaps_rollup``. The shared file's pages are tmpfs pages mapped by the workers, so
they are already in that sum (``Pss_Shmem``, each page split between the processes mapping
it); the host's ``Shmem`` growth (``/proc/meminfo``) and the file's allocated blocks are
printed next to it, not added. Then worker 0 deletes 70 % of the entries at random and calls
``compact()``: ``Shmem`` growth and the file's blocks per live stored byte.

    python asv_bench/standalone/shared_cache.py [--entries 1000000] [--rounds 3] [--json out.json]
    python asv_bench/standalone/shared_cache.py --quick    # tiny N, one round: the smoke `make test` runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import diskcache  # type: ignore[import-untyped]
import lmdb
import pymemcache  # type: ignore[import-untyped]
import valkey

import servers
import zspool
from zspool.workload import PayloadSource, spread

VALUE_BYTES = 200
BIG = 1 << 40
SHM = "/dev/shm"
OWN_FILES = "SharedCache, a file per process"
STORES = ("SharedCache", OWN_FILES, "Cache", "lmdb", "diskcache", "memcached", "Valkey")
PASSES = 3
BARRIER_TIMEOUT_S = 600


def key(i: int) -> bytes:
    return b"k%010d" % i


def values(count: int, seed: int) -> list[bytes]:
    source = PayloadSource(seed=seed)
    return [bytes(source.take(VALUE_BYTES)) for _ in range(count)]


def data_set(n: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """The N entries every store holds (the same in every process), in batches of 10,000."""
    source = PayloadSource(seed=0)
    for lo in range(0, n, 10_000):
        yield [(key(i), bytes(source.take(VALUE_BYTES))) for i in range(lo, min(n, lo + 10_000))]


def picks(n: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(n) for _ in range(count)]


def shared_cache_class() -> Any:
    """``zspool.SharedCache``, or None in a zspool that does not have it yet."""
    return getattr(zspool, "SharedCache", None)


def shared_maxbytes(n: int) -> int:
    """The SharedCache's budget: 1.5 times the data set's stored bytes (24-byte entry header,
    key, value), as a user would size it to hold the set (its index grows with the entries,
    whatever the budget)."""
    return max(64 << 20, int(1.5 * n * (24 + 11 + VALUE_BYTES)))


# The stores ------------------------------------------------------------------------------
#
# Each store is filled once by the process that owns it; `attach()` gives the calls a process
# makes after the fork: (get, set) bound to a handle of its own where the library needs one.

Ops = tuple[Callable[[bytes], Any], Callable[[bytes, bytes], Any]]


class Store:
    in_process = True
    #: Operations that take ~10-100 times longer than an in-process get: timed on `--slow-ops`.
    slow: tuple[str, ...] = ()
    #: Kept (filled once) across rounds: the fill takes minutes at a million entries.
    persistent = False

    def __init__(self, n: int, workdir: str) -> None:
        self.n = n
        self.workdir = workdir

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Whatever must live while the store is used (a server)."""
        yield

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def filled(self) -> None:
        """Called once after the last batch (a server's last write has been applied)."""

    def attach(self) -> Ops:
        raise NotImplementedError

    def attach_worker(self, worker: int) -> Ops:
        """`attach()` for timing worker number `worker` (0 or 1)."""
        return self.attach()

    def version(self) -> str:
        return ""


class CacheStore(Store):
    def __init__(self, n: int, workdir: str) -> None:
        super().__init__(n, workdir)
        self.cache = zspool.Cache(BIG)

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        self.cache.set_many(batch)

    def attach(self) -> Ops:
        return self.cache.get, self.cache.__setitem__

    def version(self) -> str:
        return f"zspool {zspool.__version__}"


class SharedCacheStore(CacheStore):
    def __init__(self, n: int, workdir: str) -> None:
        self.n, self.workdir = n, workdir
        self.path = os.path.join(workdir, "shared-cache")
        self.cache = shared_cache_class()(self.path, maxbytes=shared_maxbytes(n))


class OwnFilesStore(CacheStore):
    """The control for SharedCache's 2-process rows: the same cache, but each timing worker has
    a file of its own, filled alike, so that no cache line, lock or page is shared between
    them: its 2-process / 1-process ratio is what this machine allows such a workload."""

    def __init__(self, n: int, workdir: str) -> None:
        self.n, self.workdir = n, workdir
        self.paths = [os.path.join(workdir, f"own-file-{w}") for w in range(2)]
        self.caches = [shared_cache_class()(path, maxbytes=shared_maxbytes(n)) for path in self.paths]
        self.cache = self.caches[0]

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        for cache in self.caches:
            cache.set_many(batch)

    def attach_worker(self, worker: int) -> Ops:
        cache = self.caches[worker]
        return cache.get, cache.__setitem__

    def close(self) -> None:
        for cache, path in zip(self.caches, self.paths, strict=True):
            cache.close()
            shared_cache_class().destroy(path)


class LmdbStore(Store):
    slow = ("set",)  # a write transaction each
    persistent = True

    def __init__(self, n: int, workdir: str) -> None:
        super().__init__(n, workdir)
        self.path = os.path.join(workdir, "lmdb")
        self.env = self.open()

    def open(self) -> Any:
        return lmdb.open(self.path, map_size=max(1 << 30, 4 * self.n * VALUE_BYTES), sync=False, metasync=False)

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for k, v in batch:
                txn.put(k, v)

    def filled(self) -> None:
        self.env.close()  # py-lmdb opens an environment once per process, and not across fork()

    def attach(self) -> Ops:
        env = self.open()

        def get(k: bytes) -> Any:
            with env.begin() as txn:
                return txn.get(k)

        def put(k: bytes, v: bytes) -> Any:
            with env.begin(write=True) as txn:
                return txn.put(k, v)

        return get, put

    def version(self) -> str:
        return f"lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})"


class DiskcacheStore(Store):
    slow = ("get", "set")
    persistent = True

    def __init__(self, n: int, workdir: str) -> None:
        super().__init__(n, workdir)
        self.path = os.path.join(workdir, "diskcache")
        self.cache = diskcache.Cache(self.path, size_limit=BIG)

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        with self.cache.transact():
            for k, v in batch:
                self.cache.set(k, v)

    def attach(self) -> Ops:
        cache = diskcache.Cache(self.path, size_limit=BIG)
        return cache.get, cache.set

    def version(self) -> str:
        return f"diskcache {diskcache.__version__}"


class ServerStore(Store):
    """A server this process starts for the round; every worker connects on its own."""

    in_process = False
    slow = ("get", "set")

    def server(self) -> contextlib.AbstractContextManager[servers.Address]:
        raise NotImplementedError

    def connect(self) -> Any:
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self.server() as address:
            self.address = address
            self.client = self.connect()
            yield
            self.client.close()

    def attach(self) -> Ops:
        client = self.connect()
        return client.get, client.set


class MemcachedStore(ServerStore):
    def server(self) -> contextlib.AbstractContextManager[servers.Address]:
        return servers.memcached(memory_mb=max(64, 3 * self.n * (VALUE_BYTES + 64) >> 20))

    def connect(self) -> Any:
        # Replies awaited (noreply off): a set has been applied when it returns, as in-process.
        return pymemcache.Client(self.address.unix_socket, default_noreply=False)

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        self.client.set_many(dict(batch), noreply=True)

    def filled(self) -> None:
        self.client.version()  # a round trip: every write before it has been applied

    def version(self) -> str:
        return f"memcached {self.client.version().decode()}, pymemcache {pymemcache.__version__}"


class ValkeyStore(ServerStore):
    def server(self) -> contextlib.AbstractContextManager[servers.Address]:
        return servers.valkey()

    def connect(self) -> Any:
        return valkey.Valkey(**self.address.valkey_kwargs())  # type: ignore[arg-type]

    def fill(self, batch: list[tuple[bytes, bytes]]) -> None:
        self.client.mset(dict(batch))

    def version(self) -> str:
        return f"valkey-server {self.client.info()['valkey_version']}, valkey-py {valkey.__version__}"


STORE_CLASSES: dict[str, type[Store]] = {
    "SharedCache": SharedCacheStore,
    OWN_FILES: OwnFilesStore,
    "Cache": CacheStore,
    "lmdb": LmdbStore,
    "diskcache": DiskcacheStore,
    "memcached": MemcachedStore,
    "Valkey": ValkeyStore,
}


# Timing: forked workers on a barrier ------------------------------------------------------


def worker(
    store: Store,
    index: int,
    op: str,
    keys: list[bytes],
    vals: list[bytes],
    barrier: Any,
    out: multiprocessing.connection.Connection,
) -> None:
    get, put = store.attach_worker(index)

    def run() -> None:
        if op == "get":
            for k in keys:
                get(k)
        else:
            for k, v in zip(keys, vals, strict=True):
                put(k, v)

    if store.in_process:
        run()  # untimed: the first writes after fork() copy pages
    spans = []
    for _ in range(PASSES):
        barrier.wait(timeout=BARRIER_TIMEOUT_S)  # a dead peer breaks it instead of hanging
        start = time.perf_counter_ns()  # CLOCK_MONOTONIC: one clock for every process
        run()
        spans.append((start, time.perf_counter_ns()))
    out.send(spans)


def ns_per_op(store: Store, op: str, workers: int, ops: int, seed: int) -> float:
    """Aggregate ns per operation of `workers` forked processes doing `ops` each (best pass)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers)
    procs, results = [], []
    for w in range(workers):
        keys = [key(i) for i in picks(store.n, ops, seed + w)]
        vals = values(ops, seed + 100 + w)
        reader, writer = ctx.Pipe(duplex=False)
        p = ctx.Process(target=worker, args=(store, w, op, keys, vals, barrier, writer))
        p.start()
        writer.close()
        procs.append(p)
        results.append(reader)
    spans = [r.recv() for r in results]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a {op} worker exited with {p.exitcode}")
    best = min(max(s[i][1] for s in spans) - min(s[i][0] for s in spans) for i in range(PASSES))
    return float(best / (workers * ops))


def speed_child(kind: str, n: int, ops: int, slow_ops: int, base: str) -> dict[str, Any]:
    """Fill `kind` with N entries (a persistent store: once, in `base`), then time get and set
    from 1 and 2 processes."""
    cls = STORE_CLASSES[kind]
    with contextlib.ExitStack() as stack:
        workdir = os.path.join(base, kind)
        if not cls.persistent:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{kind}-", dir=base))
        os.makedirs(workdir, exist_ok=True)
        store = cls(n, workdir)
        stack.enter_context(store.running())
        out: dict[str, Any] = {"version": store.version(), "fill_s": None}
        marker = os.path.join(workdir, "filled")
        if not os.path.exists(marker):
            started = time.perf_counter()
            for batch in data_set(n):
                store.fill(batch)
            out["fill_s"] = time.perf_counter() - started
            open(marker, "w").close()
        store.filled()
        if isinstance(store, CacheStore):
            out["entries"] = len(store.cache)  # N, if the budget held the whole data set
        for op in ("get", "set"):
            out[f"{op}_ops"] = count = slow_ops if op in store.slow else ops
            for workers in (1, 2):
                out[f"{op}_{workers}"] = ns_per_op(store, op, workers, count, seed=1)
        if isinstance(store, OwnFilesStore):
            store.close()
        elif isinstance(store, CacheStore):
            store.cache.close()
        if isinstance(store, SharedCacheStore):
            shared_cache_class().destroy(store.path)
    return out


def speed(n: int, ops: int, slow_ops: int, rounds: int) -> list[dict[str, dict[str, Any]]]:
    """Every store's figures, one dict per round; the stores interleaved within each round."""
    kinds = [k for k in STORES if k not in ("SharedCache", OWN_FILES) or shared_cache_class() is not None]
    runs = []
    with tempfile.TemporaryDirectory(prefix="zspool-bench-", dir=SHM) as base:
        for _ in range(rounds):
            run = {}
            for kind in kinds:
                argv = [sys.executable, __file__, "--speed-child", kind, "--entries", str(n), "--ops", str(ops),
                        "--slow-ops", str(slow_ops), "--base", base]  # fmt: skip
                run[kind] = json.loads(subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True).stdout)
            runs.append(run)
    return runs


# The ratios the issue sets targets for, each computed within one round: (label, function of
# a round, target or None, whether a larger value meets it). The issue's sentence puts "within
# 1.5x of zspool.Cache and faster than lmdb" on get; the set ratios are shown beside them.
Ratio = tuple[str, Callable[[dict[str, dict[str, Any]]], float], float | None, bool]


def _ratio(a: str, op_a: str, b: str, op_b: str) -> Callable[[dict[str, dict[str, Any]]], float]:
    return lambda run: float(run[a][op_a] / run[b][op_b])


RATIOS: list[Ratio] = [
    *[
        (f"SharedCache {op} / Cache {op} (time, 1 process)", _ratio("SharedCache", f"{op}_1", "Cache", f"{op}_1"),
         1.5 if op == "get" else None, False)
        for op in ("get", "set")
    ],
    *[
        (f"{peer} {op} / SharedCache {op} (time, 1 process)", _ratio(peer, f"{op}_1", "SharedCache", f"{op}_1"),
         target if op == "get" or peer != "lmdb" else None, True)
        for peer, target in (("lmdb", 1.0), ("diskcache", 10.0), ("memcached", 10.0), ("Valkey", 10.0))
        for op in ("get", "set")
    ],
    *[
        (f"{kind} {op}: 2-process throughput / 1-process", _ratio(kind, f"{op}_1", kind, f"{op}_2"),
         1.6 if kind == "SharedCache" else None, True)
        for kind in ("SharedCache", OWN_FILES, "Cache")
        for op in ("get", "set")
    ],
    # What sharing one file costs 2 processes, against the same work on a file each.
    *[
        (f"SharedCache {op}, 2 processes: throughput / a file per process's", _ratio(OWN_FILES, f"{op}_2", "SharedCache", f"{op}_2"),
         None, True)
        for op in ("get", "set")
    ],
]  # fmt: skip


def report_speed(runs: list[dict[str, dict[str, Any]]], n: int) -> dict[str, Any]:
    first = runs[0]
    print(f"## Speed: {n:,} entries of {VALUE_BYTES} bytes, random keys; ns per operation\n")
    print(
        f"{len(runs)} round(s), median (min-max) over them; 2 processes: aggregate (total operations / wall"
        " time). Operations per process: the last column. Fill: seconds to store the N entries (lmdb and"
        " diskcache: filled once, in the first round, and kept)\n"
    )
    print(
        "| store | get, 1 process | get, 2 processes | set, 1 process | set, 2 processes | fill, s | ops (get / set) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    medians: dict[str, dict[str, float]] = {}
    for kind in STORES:
        if kind not in first:
            print(f"| {kind} | TODO: this zspool has no SharedCache | | | | | |")
            continue
        cells = [spread([r[kind][f] for r in runs], "{:,.0f}") for f in ("get_1", "get_2", "set_1", "set_2")]
        cells.append(spread([r[kind]["fill_s"] for r in runs if r[kind]["fill_s"] is not None], "{:.1f}"))
        cells.append(f"{first[kind]['get_ops']:,} / {first[kind]['set_ops']:,}")
        print(f"| {kind} | " + " | ".join(cells) + " |")
        medians[kind] = {f: statistics.median(r[kind][f] for r in runs) for f in ("get_1", "get_2", "set_1", "set_2")}
    if "SharedCache" in first:
        print(f"\nEntries in the SharedCache after the fill: {first['SharedCache']['entries']:,} of {n:,}.")
    print("\nVersions: " + "; ".join(dict.fromkeys(first[k]["version"] for k in STORES if k in first)) + "\n")
    ratios: dict[str, Any] = {}
    if "SharedCache" not in first:
        print("TODO: the ratios need zspool.SharedCache (run again with it installed)")
        return {"medians": medians, "ratios": ratios}
    print("| ratio | median (min-max) | target | met |")
    print("|---|---:|---:|---|")
    for label, f, target, larger in RATIOS:
        values = [f(r) for r in runs]
        med = statistics.median(values)
        if target is None:
            print(f"| {label} | {spread(values)} | - | - |")
            ratios[label] = {"values": values, "median": med}
            continue
        met = med >= target if larger else med <= target
        sign = ">=" if larger else "<="
        print(f"| {label} | {spread(values)} | {sign} {target:g} | {'met' if met else 'MISSED'} |")
        ratios[label] = {"values": values, "median": med, "target": f"{sign} {target:g}", "met": met}
    return {"medians": medians, "ratios": ratios}


# Memory: 4 workers holding the same data set -----------------------------------------------

WORKERS = 4


def smaps_rollup(pid: int) -> dict[str, int]:
    """The fields of /proc/PID/smaps_rollup, in bytes."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def shmem() -> int:
    """The host's tmpfs and shared memory in bytes (/proc/meminfo ``Shmem``)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Shmem in /proc/meminfo")


def memory_worker(kind: str, index: int, n: int, path: str, conn: multiprocessing.connection.Connection) -> None:
    """Waits for "build", builds or opens the cache and reads every key; then answers commands."""
    conn.recv()
    cache: Any
    if kind == "private":
        cache = zspool.Cache(BIG)
    else:
        cache = shared_cache_class()(path, maxbytes=shared_maxbytes(n))
    if kind == "private" or index == 0:
        for batch in data_set(n):
            cache.set_many(batch)
    held = sum(cache.get(key(i)) is not None for i in range(n))  # every worker touches the data set
    conn.send(held)
    while (command := conn.recv()) != "exit":
        if command == "delete":
            doomed = random.Random(5).sample(range(n), int(n * 0.7))
            for i in doomed:
                del cache[key(i)]
            cache.compact()
            live = n - len(doomed)
            stats = cache.stats()
            conn.send(
                {
                    "live_entries": live,
                    "live_payload": live * (11 + VALUE_BYTES),
                    "stored_bytes": stats.bytes,
                    "pages_in_use": stats.pages_in_use,
                    "file_bytes_allocated": stats.file_bytes_allocated,
                }
            )
    cache.close()


def memory_case(kind: str, n: int) -> dict[str, Any]:
    """4 workers (`kind` private or shared) holding N entries: their Pss and the host's Shmem."""
    ctx = multiprocessing.get_context("fork")
    path = os.path.join(SHM, f"zspool-bench-{os.getpid()}-{kind}")
    conns, procs = [], []
    for index in range(WORKERS):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=memory_worker, args=(kind, index, n, path, theirs))
        p.start()
        conns.append(mine)
        procs.append(p)
    out: dict[str, Any] = {"kind": kind}
    try:
        idle = [smaps_rollup(p.pid or 0) for p in procs]
        out["idle_pss"] = sum(s["Pss"] for s in idle)
        shmem_before = shmem()
        out["held"] = []  # entries each worker found: all N, if nothing was evicted
        for c in conns:  # one at a time: worker 0 creates and fills before the others open
            c.send("build")
            out["held"].append(c.recv())
        rollups = [smaps_rollup(p.pid or 0) for p in procs]
        out.update({f: sum(r.get(f, 0) for r in rollups) for f in ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File", "Rss")})
        out["shmem_growth"] = shmem() - shmem_before
        if kind == "shared":
            out["file_bytes"] = os.stat(path).st_blocks * 512
            conns[0].send("delete")
            out["after_delete"] = conns[0].recv()
            out["after_delete"]["shmem_growth"] = shmem() - shmem_before
            out["after_delete"]["file_bytes"] = os.stat(path).st_blocks * 512
        for c in conns:
            c.send("exit")
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"a {kind} memory worker exited with {p.exitcode}")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()  # by the PID of the worker started here
                p.join()
        if kind == "shared" and os.path.exists(path):
            shared_cache_class().destroy(path)
    return out


def report_memory(private: dict[str, Any], shared: dict[str, Any] | None, n: int) -> dict[str, Any]:
    mib = 1 << 20
    payload = n * (11 + VALUE_BYTES)
    print(f"\n## Memory: {WORKERS} workers holding the same {n:,} entries ({payload / mib:.0f} MiB of key + value)\n")
    print(
        f"Summed: Pss of the {WORKERS} workers (/proc/PID/smaps_rollup). The shared file's tmpfs pages are"
        " in it (Pss_Shmem: each page split between the processes mapping it), so the host's Shmem growth"
        " is shown beside it, not added.\n"
    )
    print("| | 4 private zspool.Cache | 1 SharedCache, 4 workers | shared / private |")
    print("|---|---:|---:|---:|")
    out: dict[str, Any] = {"private": private, "shared": shared}
    if shared is None:
        print(f"| Pss sum, MiB | {private['Pss'] / mib:,.1f} | TODO: no SharedCache | |")
        return out
    for label, idle in (("Pss sum", False), ("Pss sum beyond 4 idle workers", True)):
        mine, theirs = (r["Pss"] - (r["idle_pss"] if idle else 0) for r in (shared, private))
        out[f"ratio {label}"] = mine / theirs
        print(f"| {label}, MiB | {theirs / mib:,.1f} | {mine / mib:,.1f} | {mine / theirs:.3f} |")
    for field in ("Pss_Anon", "Pss_Shmem"):
        print(f"| of which {field}, MiB | {private[field] / mib:,.1f} | {shared[field] / mib:,.1f} | |")
    growth = (private["shmem_growth"] / mib, shared["shmem_growth"] / mib)
    print(f"| host Shmem growth (not added), MiB | {growth[0]:,.1f} | {growth[1]:,.1f} | |")
    print(f"| the shared file's allocated blocks, MiB | - | {shared['file_bytes'] / mib:,.1f} | |")
    print(f"| entries found by the worker that found fewest | {min(private['held']):,} | {min(shared['held']):,} | |")
    met = out["ratio Pss sum"] <= 0.3
    print(f"\nPss sum, shared / private: {out['ratio Pss sum']:.3f} (target <= 0.3: {'met' if met else 'MISSED'})")
    after = shared["after_delete"]
    stored = after["stored_bytes"]
    print(
        f"\nAfter deleting 70 % at random and compact(): {after['live_entries']:,} entries,"
        f" {stored / mib:.1f} MiB stored (stats().bytes: entry headers, keys and values; key + value: {after['live_payload'] / mib:.1f} MiB)\n"
    )
    print("| per live stored byte | value | target |")
    print("|---|---:|---:|")
    for label, field in (
        ("host Shmem growth", "shmem_growth"),
        ("the file's allocated blocks (st_blocks)", "file_bytes"),
    ):
        per = after[field] / stored
        out[f"after_delete {field} per stored byte"] = per
        print(f"| {label} | {per:.3f} | <= 1.25: {'met' if per <= 1.25 else 'MISSED'} |")
    # Where the file's bytes are: its zspages' pages, and the rest (index slots, which
    # compaction shrank with the entries, and the other metadata regions).
    zspages = after["pages_in_use"] * zspool.PAGE_SIZE / stored
    print(f"| of which zspages' pages (stats().pages_in_use) | {zspages:.3f} | - |")
    print(f"| of which the rest of the file (index, metadata) | {after['file_bytes'] / stored - zspages:.3f} | - |")
    out["after_delete zspage pages per stored byte"] = zspages
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in every store")
    parser.add_argument("--ops", type=int, default=200_000, help="operations per process, in-process stores")
    parser.add_argument(
        "--slow-ops", type=int, default=20_000, help="operations per process: servers, diskcache, lmdb set"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every store")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--quick", action="store_true", help="tiny N, one round: checks that everything runs")
    parser.add_argument("--speed-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--base", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_child:
        print(json.dumps(speed_child(args.speed_child, args.entries, args.ops, args.slow_ops, args.base)))
        return
    if args.quick:
        args.entries, args.ops, args.slow_ops, args.rounds = 2_000, 1_000, 200, 1
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{started}, CPython {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
    runs = speed(args.entries, args.ops, args.slow_ops, args.rounds)
    result: dict[str, Any] = {"started": started, "args": vars(args), "rounds": runs}
    result.update(report_speed(runs, args.entries))
    private = memory_case("private", args.entries)
    shared = memory_case("shared", args.entries) if shared_cache_class() is not None else None
    result["memory"] = report_memory(private, shared, args.entries)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
