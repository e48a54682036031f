"""The systems under test, each behind the same small interface.

``ids`` are key numbers; servers see the key ``b"k%010d" % id`` (11 bytes), in-process
mappings keep that same bytes key, and the zspool pool keeps its handles in an
``array('Q')`` indexed by key number (8 bytes per key, no Python object per value), so the
harness's own index costs as little as it can and is stated in every report. The array grows
as keys are stored, inside the measured window, as a dict pays for its keys.

Servers run on 127.0.0.1 on a free port, pinned to CPU 1 (the driver and probe run on CPU 0),
and are stopped by the PID of the process this harness started.
"""

from __future__ import annotations

import array
import math
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from protocols import Memcached, Redis
from zspool.workload import reclaim_python_heap

MiB = 1 << 20


def key(i: int) -> bytes:
    return b"k%010d" % i


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class System:
    name = ""
    in_process = True
    lever_name = ""

    def __init__(self, total_keys: int, fill_payload: int) -> None:
        self.total_keys = total_keys
        self.fill_payload = fill_payload

    def unavailable(self) -> str | None:
        """Why this system can't run here, or None."""
        return None

    def start(self) -> None: ...
    def pid(self) -> int:
        return os.getpid()

    def set_many(self, ids: Sequence[int], values: Sequence[memoryview]) -> None: ...
    def delete_many(self, ids: Sequence[int]) -> None: ...
    def get_many(self, ids: Sequence[int]) -> list[bytes | None]: ...
    def probe_get(self, i: int) -> bytes | None: ...
    def lever(self) -> dict[str, Any]:
        """Start (and, if synchronous, finish) this system's own reclaim lever."""
        return {}

    def after_reclaim(self) -> None:
        """Undo lever settings that would cost data on the refill (memcached's limit)."""

    def extras(self) -> dict[str, Any]:
        """System-specific figures recorded at each phase."""
        return {}

    def versions(self) -> dict[str, str]:
        return {}

    def stop(self) -> None: ...


class ZspoolPool(System):
    name = "zspool Pool"
    lever_name = "pool.compact() (GIL released; probe reads from another thread)"

    def start(self) -> None:
        import zspool

        self.zspool = zspool
        self.pool = zspool.Pool(name="peers")
        self.handles = array.array("Q")  # grown by set_many, after the P0 mark

    def set_many(self, ids: Sequence[int], values: Sequence[memoryview]) -> None:
        # Keys are stored in order (the fill 0..N, the refill after it), so key i's handle
        # is appended at index i.
        if ids[0] != len(self.handles):
            raise ValueError(f"keys must be stored in order: got {ids[0]}, expected {len(self.handles)}")
        store = self.pool.store
        self.handles.extend(store(v) for v in values)

    def delete_many(self, ids: Sequence[int]) -> None:
        free, handles = self.pool.free, self.handles
        for i in ids:
            free(handles[i])

    def get_many(self, ids: Sequence[int]) -> list[bytes | None]:
        load, handles = self.pool.load, self.handles
        return [load(handles[i]) for i in ids]

    def probe_get(self, i: int) -> bytes | None:
        return self.pool.load(self.handles[i])

    def lever(self) -> dict[str, Any]:
        cpu = time.thread_time()
        report = self.pool.compact()
        out = report.as_dict()
        out["lever_cpu_s"] = time.thread_time() - cpu
        out["lever_wall_s"] = report.duration_s
        return out

    def extras(self) -> dict[str, Any]:
        s = self.pool.stats()
        return {"pool_bytes": s.mem_used_bytes, "metadata_bytes": s.metadata_bytes, "index_bytes": 8 * len(self.handles)}

    def versions(self) -> dict[str, str]:
        return {"zspool": self.zspool.__version__}

    def stop(self) -> None:
        self.pool.close()


class ZspoolCache(System):
    """``zspool.Cache``, a bytes-keyed mapping over a pool, when this zspool has it."""

    name = "zspool Cache"
    lever_name = "Cache.compact()"

    def unavailable(self) -> str | None:
        import zspool

        return None if hasattr(zspool, "Cache") else f"zspool {zspool.__version__} has no zspool.Cache"

    def start(self) -> None:
        import zspool

        self.zspool = zspool
        # Budget: twice the fill's bytes (keys, values, headers), so nothing is ever evicted.
        self.cache = zspool.Cache(2 * (self.fill_payload + 16 * self.total_keys))  # type: ignore[attr-defined]

    def set_many(self, ids: Sequence[int], values: Sequence[memoryview]) -> None:
        c = self.cache
        for i, v in zip(ids, values):
            c[key(i)] = bytes(v)  # a Cache stores bytes values, as the dict peer does

    def delete_many(self, ids: Sequence[int]) -> None:
        c = self.cache
        for i in ids:
            del c[key(i)]

    def get_many(self, ids: Sequence[int]) -> list[bytes | None]:
        return [self.cache.get(key(i)) for i in ids]

    def probe_get(self, i: int) -> bytes | None:
        return self.cache.get(key(i))

    def lever(self) -> dict[str, Any]:
        cpu = time.thread_time()
        t0 = time.perf_counter()
        compact = getattr(self.cache, "compact", None) or self.cache.pool.compact
        report = compact()
        out = report.as_dict() if hasattr(report, "as_dict") else {}
        out["lever_cpu_s"] = time.thread_time() - cpu
        out["lever_wall_s"] = time.perf_counter() - t0
        return out

    def versions(self) -> dict[str, str]:
        return {"zspool": self.zspool.__version__}

    def stop(self) -> None:
        close = getattr(self.cache, "close", None)
        if close:
            close()


class DictOfBytes(System):
    name = "dict of bytes"
    lever_name = "gc.collect() + malloc_trim(0)"

    def start(self) -> None:
        self.d: dict[bytes, bytes] = {}

    def set_many(self, ids: Sequence[int], values: Sequence[memoryview]) -> None:
        d = self.d
        for i, v in zip(ids, values):
            d[key(i)] = bytes(v)

    def delete_many(self, ids: Sequence[int]) -> None:
        d = self.d
        for i in ids:
            del d[key(i)]

    def get_many(self, ids: Sequence[int]) -> list[bytes | None]:
        return [self.d.get(key(i)) for i in ids]

    def probe_get(self, i: int) -> bytes | None:
        return self.d.get(key(i))

    def lever(self) -> dict[str, Any]:
        cpu, t0 = time.thread_time(), time.perf_counter()
        reclaim_python_heap()
        return {"lever_cpu_s": time.thread_time() - cpu, "lever_wall_s": time.perf_counter() - t0}

    def versions(self) -> dict[str, str]:
        return {"python": platform.python_version()}


class CachetoolsLRU(DictOfBytes):
    name = "cachetools.LRUCache"

    def unavailable(self) -> str | None:
        try:
            import cachetools  # noqa: F401
        except ImportError:
            return "cachetools is not installed (pip install cachetools)"
        return None

    def start(self) -> None:
        import cachetools

        self.cachetools = cachetools
        self.d = cachetools.LRUCache(maxsize=2 * self.total_keys)  # type: ignore[assignment]

    def versions(self) -> dict[str, str]:
        return {"cachetools": self.cachetools.__version__}


class _Server(System):
    in_process = False
    binary = ""

    def unavailable(self) -> str | None:
        if shutil.which(self.binary) is None:
            return f"{self.binary} not installed (apt-get install -y redis-server memcached)"
        return None

    def _spawn(self, argv: list[str]) -> None:
        self.tmp = tempfile.mkdtemp(prefix=f"zspool-peer-{self.binary}-")
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)).replace("{dir}", self.tmp) for a in argv]
        self.proc = subprocess.Popen(
            argv,
            stdout=open(os.path.join(self.tmp, "server.log"), "wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {1}) if os.cpu_count() and os.cpu_count() > 1 else None,  # type: ignore[func-returns-value]
        )
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {0})
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start; see {self.tmp}/server.log") from None
                time.sleep(0.05)

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        for conn in (getattr(self, "conn", None), getattr(self, "probe", None)):
            if conn is not None:
                conn.close()
        os.kill(self.proc.pid, 15)  # by the PID we started, never by name
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, 9)
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class RedisServer(_Server):
    name = "Redis"
    binary = "redis-server"
    lever_name = "MEMORY PURGE (+ activedefrag if the build has it)"

    def start(self) -> None:
        self._spawn(
            ["redis-server", "--bind", "127.0.0.1", "--port", "{port}", "--save", "", "--appendonly", "no",
             "--dir", "{dir}", "--daemonize", "no", "--protected-mode", "yes"]
        )
        self.conn, self.probe = Redis(self.port), Redis(self.port)

    def set_many(self, ids: Sequence[int], values: Sequence[memoryview]) -> None:
        self.conn.set_many([(key(i), v) for i, v in zip(ids, values)])

    def delete_many(self, ids: Sequence[int]) -> None:
        self.conn.delete_many([key(i) for i in ids])

    def get_many(self, ids: Sequence[int]) -> list[bytes | None]:
        return self.conn.get_many([key(i) for i in ids])

    def probe_get(self, i: int) -> bytes | None:
        return self.probe.get(key(i))

    def lever(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        reply = self.conn.command("CONFIG", "SET", "activedefrag", "yes")
        out["activedefrag"] = "available" if not isinstance(reply, Exception) else f"unavailable: {reply}"
        if not isinstance(reply, Exception):
            for name, value in (("active-defrag-ignore-bytes", "1mb"), ("active-defrag-cycle-min", "25"),
                                ("active-defrag-cycle-max", "75")):
                self.conn.command("CONFIG", "SET", name, value)
        t0 = time.perf_counter()
        out["memory_purge"] = str(self.conn.command("MEMORY", "PURGE"))
        out["lever_wall_s"] = time.perf_counter() - t0
        return out

    def extras(self) -> dict[str, Any]:
        info = self.conn.info("all")
        names = ("used_memory", "used_memory_rss", "allocator_frag_ratio", "allocator_rss_ratio",
                 "mem_fragmentation_ratio", "active_defrag_running", "active_defrag_hits", "mem_allocator")
        return {n: info.get(n) for n in names}

    def versions(self) -> dict[str, str]:
        info = self.conn.info("all")
        return {"redis": f"{info.get('redis_version')} ({info.get('mem_allocator', '?')})"}


class MemcachedServer(_Server):
    name = "memcached"
    binary = "memcached"
    lever_name = "slabs automove 1 + cache_memlimit 1.3x live item bytes"

    def start(self) -> None:
        # -m: 1.5x the fill's item bytes (value + key + ~60 B header), so the fill never evicts.
        self.mem_mb = max(64, math.ceil(1.5 * (self.fill_payload + 71 * self.total_keys) / MiB))
        argv = ["memcached", "-l", "127.0.0.1", "-p", "{port}", "-U", "0", "-m", str(self.mem_mb), "-o", "modern"]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self._spawn(argv)
        self.conn, self.probe = Memcached(self.port), Memcached(self.port)

    def set_many(self, ids: Sequence[int], values: Sequence[memoryview]) -> None:
        self.conn.set_many([(key(i), v) for i, v in zip(ids, values)])

    def delete_many(self, ids: Sequence[int]) -> None:
        self.conn.delete_many([key(i) for i in ids])

    def get_many(self, ids: Sequence[int]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for start in range(0, len(ids), 100):
            out += self.conn.get_many([key(i) for i in ids[start : start + 100]])
        return out

    def probe_get(self, i: int) -> bytes | None:
        return self.probe.get(key(i))

    def lever(self) -> dict[str, Any]:
        live = int(self.conn.stats()["bytes"])
        limit = max(8, math.ceil(1.3 * live / MiB))
        return {
            "automove": self.conn.command("slabs automove 1"),
            "cache_memlimit_mb": limit,
            "reply": self.conn.command(f"cache_memlimit {limit}"),
        }

    def after_reclaim(self) -> None:
        self.conn.command(f"cache_memlimit {self.mem_mb}")

    def extras(self) -> dict[str, Any]:
        s = self.conn.stats()
        s["total_malloced"] = self.conn.stats("slabs").get("total_malloced", "?")
        names = ("bytes", "total_malloced", "slabs_moved", "slab_reassign_rescues", "evictions", "curr_items",
                 "slab_global_page_pool")
        return {n: s.get(n) for n in names}

    def versions(self) -> dict[str, str]:
        return {"memcached": self.conn.stats().get("version", "?") + f" (-m {self.mem_mb})"}


SYSTEMS: dict[str, type[System]] = {
    "zspool": ZspoolPool,
    "zspool-cache": ZspoolCache,
    "dict": DictOfBytes,
    "cachetools": CachetoolsLRU,
    "redis": RedisServer,
    "memcached": MemcachedServer,
}
