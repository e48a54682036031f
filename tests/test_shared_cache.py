"""zspool.SharedCache: the mapping API, its errors, the file (permissions, destroy, bad files,
create races) and its reclaimer. The multi-process stress and kill tests are in
test_shared_cache_stress.py."""

from __future__ import annotations

import gc
import math
import os
import pickle
import random
import select
import stat
import time
import warnings
from collections.abc import Iterator

import pytest
from shared_cache_support import fork_worker, read_errors, remove_all, shm_file, wait_exit

import zspool
from zspool import (
    ConfigError,
    ObjectSizeError,
    PoolClosedError,
    SharedCache,
    SharedFileError,
    ZsPoolError,
)

MiB = 1 << 20


@pytest.fixture
def shm_path() -> Iterator[str]:
    yield from shm_file()


@pytest.fixture
def cache(shm_path: str) -> Iterator[SharedCache]:
    c = SharedCache(shm_path, 4 * MiB)
    try:
        yield c
    finally:
        c.close()


# -- the mapping -------------------------------------------------------------------------------


def test_mapping_methods(cache: SharedCache) -> None:
    cache["a"] = b"1"
    cache[b"a"] = b"2"  # a different key: compared by bytes and kind
    assert cache["a"] == b"1" and cache[b"a"] == b"2"
    assert cache.get("missing") is None and cache.get("missing", b"d") == b"d"
    assert "a" in cache and "missing" not in cache and 42 not in cache
    assert len(cache) == 2
    assert sorted(cache, key=repr) == sorted(["a", b"a"], key=repr)
    assert dict(cache.items()) == {"a": b"1", b"a": b"2"}
    assert sorted(cache.values()) == [b"1", b"2"]
    del cache[b"a"]
    with pytest.raises(KeyError):
        del cache[b"a"]
    with pytest.raises(KeyError):
        cache[b"a"]
    assert cache.pop("a") == b"1"
    assert cache.pop("a", None) is None
    with pytest.raises(KeyError):
        cache.pop("a")
    assert cache.setdefault("s", b"first") == b"first"
    assert cache.setdefault("s", b"second") == b"first"
    cache.set_many({"x": b"1", "y": b"2"})
    cache.set_many([("z", b"3")])
    assert cache.get_many(["x", "y", "z", "w"], b"-") == [b"1", b"2", b"3", b"-"]
    assert cache.delete_many(["x", "y", "nope"]) == 2
    key, value = cache.popitem()
    assert key in ("s", "z") and value in (b"first", b"3")
    cache.update({"u": b"v"})
    assert cache["u"] == b"v"
    cache.clear()
    assert len(cache) == 0 and list(cache) == []
    with pytest.raises(KeyError):
        cache.popitem()


def test_iteration_is_a_snapshot(cache: SharedCache) -> None:
    cache.set_many({f"k{i}": b"v" for i in range(100)})
    seen = []
    for key in cache:
        seen.append(key)
        cache.pop(f"k{99 - len(seen) + 1}", None)  # deleting while iterating does not break it
    assert len(seen) == 100


def test_ttl_and_expire(cache: SharedCache) -> None:
    cache.set("short", b"v", ttl=0.05)
    cache.set("long", b"v", ttl=math.inf)
    cache["plain"] = b"v"
    assert cache["short"] == b"v"
    time.sleep(0.1)
    assert cache.get("short") is None
    cache.set("short2", b"v", ttl=0.01)
    time.sleep(0.05)
    assert cache.expire() >= 1
    assert "long" in cache and "plain" in cache
    with pytest.raises(ValueError):
        cache.set("k", b"v", ttl=0)
    with pytest.raises(TypeError):
        cache.set("k", b"v", ttl="1")  # type: ignore[arg-type]


def test_default_ttl(shm_path: str) -> None:
    with SharedCache(shm_path, MiB, ttl=0.05) as c:
        assert c.ttl == pytest.approx(0.05)
        c["k"] = b"v"
        c.set("forever", b"v", ttl=math.inf)
        time.sleep(0.1)
        assert "k" not in c
        assert c["forever"] == b"v"


def test_stats_attributes_items_and_dict(cache: SharedCache) -> None:
    cache["k"] = b"v" * 100
    cache.get("k")
    cache.get("missing")
    s = cache.stats()
    assert s.hits >= 1 and s.misses >= 1 and s.sets >= 1 and s.entries == 1
    assert s["recoveries"] == s.recoveries == 0
    assert s["bytes"] == cache.currsize > 0
    assert s.maxbytes == cache.maxsize == 4 * MiB
    d = s.as_dict()
    for field in ("entries", "hits", "misses", "sets", "evictions", "expirations", "recoveries",
                  "entries_dropped_on_recovery", "corrupt_dropped", "pages_in_use", "pages_max",
                  "file_bytes_allocated", "zspages", "pages_compacted", "objects_migrated", "compactions"):
        assert d[field] == s[field] == getattr(s, field)
    with pytest.raises(KeyError):
        s["nope"]


def test_properties_repr_and_context_manager(shm_path: str) -> None:
    name = os.path.basename(shm_path)
    with SharedCache(name, 2 * MiB, compression="lz4") as c:  # a bare name is /dev/shm/<name>
        assert c.path == shm_path
        assert os.path.exists(shm_path)
        assert c.compression == "lz4" and c.eviction == "sieve" and c.ttl is None
        assert c.maxsize == 2 * MiB and c.currsize == 0
        assert shm_path in repr(c)
    assert c.closed
    assert "closed" in repr(c)


def test_compression_round_trips(shm_path: str) -> None:
    with SharedCache(shm_path, 4 * MiB, compression="zstd") as c:
        values = {f"k{i}": (b"compressible %d " % i) * 200 for i in range(50)}
        c.set_many(values)
        assert c.get_many(list(values)) == list(values.values())
        assert c.currsize < sum(len(v) for v in values.values()) / 4


def test_serializers(shm_path: str) -> None:
    with SharedCache(shm_path, MiB, serializer="pickle") as c:
        c["obj"] = {"a": [1, 2, (3, 4)]}
        c["raw"] = b"bytes stay bytes"
        assert c["obj"] == {"a": [1, 2, (3, 4)]}
        assert c["raw"] == b"bytes stay bytes"
        assert c.setdefault("none") is None
    # Reopened without serializer=: the file says pickle, so values come back as objects.
    with SharedCache(shm_path) as c:
        assert c["obj"] == {"a": [1, 2, (3, 4)]}


class Upper:
    @staticmethod
    def dumps(obj: object) -> bytes:
        return str(obj).upper().encode()

    @staticmethod
    def loads(data: bytes) -> str:
        return data.decode()


def test_custom_serializer_must_be_given_again(shm_path: str) -> None:
    with SharedCache(shm_path, MiB, serializer=Upper()) as c:
        c["k"] = "hello"
        assert c["k"] == "HELLO"
    with pytest.raises(ConfigError, match="serializer"):
        SharedCache(shm_path)
    with SharedCache(shm_path, serializer=Upper()) as c:
        assert c["k"] == "HELLO"


def test_compact_and_can_compact(cache: SharedCache) -> None:
    cache.set_many({f"k{i}": os.urandom(300) for i in range(3000)})
    for i in range(0, 3000, 3):
        cache.pop(f"k{i}", None)
    assert cache.can_compact() >= 0
    report = cache.compact()
    assert report.stop_reason in ("done", "nothing_freeable", "budget_reached")
    assert cache.can_compact() == 0 or report.pages_freed > 0
    report = cache.compact(max_pages=1, time_budget=0.5)
    assert report.pages_freed <= 1
    with pytest.raises(ValueError):
        cache.compact(max_pages=-1)


def test_eviction_keeps_currsize_within_maxsize(shm_path: str) -> None:
    with SharedCache(shm_path, MiB) as c:
        for i in range(5000):
            c[f"k{i}"] = b"x" * 500
        assert c.currsize <= c.maxsize
        assert c.stats().evictions > 0
        assert 0 < len(c) < 5000


# -- errors --------------------------------------------------------------------------------------


def test_wrong_types(cache: SharedCache) -> None:
    with pytest.raises(TypeError):
        cache[1] = b"v"  # type: ignore[index]
    with pytest.raises(TypeError):
        cache["k"] = "not bytes, and no serializer"
    with pytest.raises(TypeError):
        cache.get(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache.set_many([1, 2])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        SharedCache(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SharedCache(cache.path, "1 MiB")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SharedCache(cache.path, serializer=object())
    with pytest.raises(TypeError):
        SharedCache(cache.path, mode="0600")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SharedCache(cache.path, compression="gzip")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SharedCache("")


def test_closed_cache_raises(shm_path: str) -> None:
    c = SharedCache(shm_path, MiB)
    c["k"] = b"v"
    c.close()
    c.close()  # idempotent
    assert c.closed
    for op in (lambda: c["k"], lambda: c.set("k", b"v"), lambda: len(c), lambda: list(c),
               lambda: c.get("k"), lambda: c.stats(), lambda: c.compact(), lambda: c.currsize,
               lambda: "k" in c, lambda: c.get_many(["k"]), lambda: c.clear()):
        with pytest.raises(PoolClosedError):
            op()
    # The entries stay in the file for everyone else.
    with SharedCache(shm_path) as again:
        assert again["k"] == b"v"


def test_too_large(cache: SharedCache) -> None:
    with pytest.raises(ObjectSizeError):
        cache["big"] = b"x" * (8 * MiB)
    with pytest.raises(ObjectSizeError, match=str(zspool.SHARED_MAX_ENTRY_SIZE)):
        cache["big"] = os.urandom(zspool.SHARED_MAX_ENTRY_SIZE)  # with its header, past the largest class
    for size in (zspool.MAX_CLASS_SIZE - 100, zspool.MAX_CLASS_SIZE + 1, 30_000, zspool.SHARED_MAX_ENTRY_SIZE - 100):
        value = os.urandom(size)
        cache["fits"] = value
        assert cache["fits"] == value
    assert "big" not in cache


def test_configuration_mismatch_names_the_field(shm_path: str) -> None:
    with SharedCache(shm_path, 2 * MiB, compression="lz4", ttl=60):
        with pytest.raises(ConfigError, match=r"maxbytes.*2097152.*1048576|maxbytes.*1048576.*2097152"):
            SharedCache(shm_path, MiB)
        with pytest.raises(ConfigError, match="compression") as info:
            SharedCache(shm_path, compression="zstd")
        assert "lz4" in str(info.value) and "zstd" in str(info.value)
        with pytest.raises(ConfigError, match="ttl"):
            SharedCache(shm_path, ttl=None)
        with pytest.raises(ConfigError, match="serializer"):
            SharedCache(shm_path, serializer="pickle")
        # Left out: the file's values.
        with SharedCache(shm_path) as same:
            assert (same.maxsize, same.compression, same.ttl) == (2 * MiB, "lz4", 60)
        with SharedCache(shm_path, 2 * MiB, compression="lz4", ttl=60):
            pass


def test_maxbytes_out_of_range(shm_path: str) -> None:
    with pytest.raises(ConfigError, match="maxbytes"):
        SharedCache(shm_path, 1000)
    with pytest.raises(ConfigError, match="maxbytes"):
        SharedCache(shm_path, 1 << 50)
    with pytest.raises(ValueError):
        SharedCache(shm_path, -1)
    assert not os.path.exists(shm_path)


def test_lru_is_refused(shm_path: str) -> None:
    with pytest.raises(ConfigError, match="SIEVE"):
        SharedCache(shm_path, MiB, eviction="lru")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SharedCache(shm_path, MiB, eviction="fifo")  # type: ignore[arg-type]
    assert not os.path.exists(shm_path)


def test_create_false(shm_path: str) -> None:
    with pytest.raises(FileNotFoundError):
        SharedCache(shm_path, MiB, create=False)
    assert not os.path.exists(shm_path)
    SharedCache(shm_path, MiB).close()
    with SharedCache(shm_path, create=False) as c:
        assert c.maxsize == MiB


def test_errors_are_documented_subclasses() -> None:
    assert issubclass(SharedFileError, ZsPoolError) and issubclass(SharedFileError, ValueError)
    assert zspool.SharedFileError is SharedFileError
    assert "SharedFileError" in zspool.errors.__doc__


# -- the file ---------------------------------------------------------------------------------


def test_permissions_default_0600(shm_path: str) -> None:
    old = os.umask(0)
    try:
        SharedCache(shm_path, MiB).close()
        assert stat.S_IMODE(os.stat(shm_path).st_mode) == 0o600
        other = shm_path + "-mode"
        try:
            SharedCache(other, MiB, mode=0o640).close()
            assert stat.S_IMODE(os.stat(other).st_mode) == 0o640
        finally:
            remove_all(other)
    finally:
        os.umask(old)


def test_destroy(shm_path: str) -> None:
    c = SharedCache(shm_path, MiB)
    c["k"] = b"v"
    assert SharedCache.destroy(shm_path) is True
    assert not os.path.exists(shm_path)
    assert SharedCache.destroy(shm_path) is False
    # This process still has it mapped: its entries are there until it closes.
    assert c["k"] == b"v"
    c["k2"] = b"v2"
    with SharedCache(shm_path, MiB) as fresh:  # a new, empty cache at the same path
        assert "k" not in fresh
    c.close()
    assert SharedCache.destroy(os.path.basename(shm_path)) is True  # by name


def test_destroy_leaves_a_file_that_is_not_a_cache(shm_path: str) -> None:
    write_file(shm_path, b"someone else's data")
    with pytest.raises(SharedFileError):
        SharedCache.destroy(shm_path)
    with open(shm_path, "rb") as f:
        assert f.read() == b"someone else's data"


def write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a cache\n", b"\0" * 4096, b"\0" * 100_000, b"ZSPOOLSC", b"ZSPOOLSC" + b"\xff" * 4088],
    ids=["empty", "text", "zero-page", "zeros", "magic-only", "magic-then-garbage"],
)
def test_foreign_and_garbage_files(shm_path: str, content: bytes) -> None:
    write_file(shm_path, content)
    with pytest.raises(SharedFileError):
        SharedCache(shm_path, MiB)
    with pytest.raises(SharedFileError):
        SharedCache(shm_path)
    with open(shm_path, "rb") as f:
        assert f.read() == content, "a file that is not ours is left as it was"


def test_random_files(shm_path: str) -> None:
    rng = random.Random(1)
    for size in (1, 7, 64, 4095, 4096, 4097, 65536, 300_000):
        write_file(shm_path, rng.randbytes(size))
        with pytest.raises(SharedFileError):
            SharedCache(shm_path)


def real_file(path: str) -> bytes:
    with SharedCache(path, MiB) as c:
        c.set_many({f"k{i}": b"v%d" % i for i in range(200)})
    with open(path, "rb") as f:
        return f.read()


def test_truncated_file(shm_path: str) -> None:
    real_file(shm_path)
    size = os.path.getsize(shm_path)
    for keep in (4096, size // 2, size - 4096):
        os.truncate(shm_path, keep)
        with pytest.raises(SharedFileError):
            SharedCache(shm_path)
        remove_all(shm_path)
        real_file(shm_path)


def test_other_layout_version(shm_path: str) -> None:
    real_file(shm_path)
    with open(shm_path, "r+b") as f:
        header = bytearray(f.read(16))
        assert header[:8] == b"ZSPOOLSC"
        version = int.from_bytes(header[8:12], "little")
        f.seek(8)
        f.write((version + 1).to_bytes(4, "little"))
    with pytest.raises(SharedFileError, match="version"):
        SharedCache(shm_path)


def test_concurrent_creators_share_one_file(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    """Processes creating the same path at once all succeed, and all use one file."""
    go_r, go_w = os.pipe()
    errors = os.path.join(tmp_path, "errors")

    def creator(n: int) -> None:
        os.read(go_r, 1)  # start together
        with SharedCache(shm_path, 2 * MiB) as c:
            c[f"from-{n}"] = b"%d" % n
            deadline = time.monotonic() + 10
            while not all(f"from-{i}" in c for i in range(4)):
                assert time.monotonic() < deadline, f"creator {n} never saw the others' entries"
                time.sleep(0.005)

    for _round in range(5):
        remove_all(shm_path)
        pids = [fork_worker(lambda n=n: creator(n), errors) for n in range(4)]
        os.write(go_w, b"xxxx")
        statuses = [wait_exit(pid, 30) for pid in pids]
        assert statuses == [0] * 4, read_errors(errors) or statuses
        created = [name for name in os.listdir("/dev/shm") if name.startswith(os.path.basename(shm_path))]
        assert created == [os.path.basename(shm_path)], f"one file, no leftovers: {created}"
    os.close(go_r)
    os.close(go_w)


def test_pop_and_setdefault_are_atomic_across_processes(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    """4 processes race on the same keys: of those that setdefault a key, one stores and all
    return its value; of those that pop it, exactly one gets the value."""
    errors = os.path.join(tmp_path, "errors")
    out = os.path.join(tmp_path, "out")
    keys = [f"k{i}" for i in range(2000)]
    (go_r, go_w), (added_r, added_w), (pop_r, pop_w) = os.pipe(), os.pipe(), os.pipe()
    with SharedCache(shm_path, 16 * MiB) as c:

        def racer(n: int) -> None:
            os.read(go_r, 1)
            added = [c.setdefault(k, b"%d" % n) for k in keys]
            os.write(added_w, b"x")
            os.read(pop_r, 1)  # every racer has added every key before any pops
            popped = [c.pop(k, None) for k in keys]
            with open(f"{out}.{n}", "wb") as f:
                pickle.dump((added, popped), f)

        pids = [fork_worker(lambda n=n: racer(n), errors) for n in range(4)]
        os.write(go_w, b"xxxx")
        for _ in range(4):
            # A racer that failed never writes: give up after a while (its error is in `errors`).
            assert select.select([added_r], [], [], 60)[0], read_errors(errors) or "a racer is stuck"
            os.read(added_r, 1)
        os.write(pop_w, b"xxxx")
        assert [wait_exit(pid, 60) for pid in pids] == [0] * 4, read_errors(errors)
        results = []
        for n in range(4):
            with open(f"{out}.{n}", "rb") as f:
                results.append(pickle.load(f))
        for i, key in enumerate(keys):
            added = {added[i] for added, _ in results}
            assert len(added) == 1, f"{key}: every racer returns the one value stored: {added}"
            popped = [p[i] for _, p in results if p[i] is not None]
            assert popped == list(added), f"{key}: exactly one racer popped it: {popped}"
        assert len(c) == 0
    for fd in (go_r, go_w, added_r, added_w, pop_r, pop_w):
        os.close(fd)


# -- the file is input, not trust ------------------------------------------------------------


def test_random_bytes_in_header_and_metadata(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    """Random bytes written into a real file's header and metadata (before the data region),
    then opened and used: only SharedFileError, ConfigError or OSError at open, and afterwards
    only right values or misses (checked in a child, so that a crash fails the test)."""
    rng = random.Random(16)
    values = {f"k{i}": (b"value %d " % i) * (1 + i % 40) for i in range(400)}
    with SharedCache(shm_path, MiB) as c:
        c.set_many(values)
    with open(shm_path, "rb") as f:
        # Where the data region starts: the header's data_off (rust/zspool-shared/src/header.rs).
        meta_end = int.from_bytes(f.read(136)[128:136], "little")
        assert 4096 <= meta_end < os.path.getsize(shm_path)
        f.seek(0)
        pristine = f.read(meta_end)
    errors = os.path.join(tmp_path, "errors")
    outcomes = {"refused": 0, "opened": 0}
    for trial in range(60):
        damaged = bytearray(pristine)
        for _ in range(rng.choice((1, 4, 32))):
            start = rng.randrange(0, 4096 if trial % 2 else meta_end)
            n = rng.choice((1, 4, 8, 64))
            damaged[start : start + n] = rng.randbytes(len(damaged[start : start + n]))
        with open(shm_path, "r+b") as f:
            f.write(damaged)

        def use() -> None:
            try:
                c = SharedCache(shm_path)
            except (SharedFileError, ConfigError, OSError):
                os._exit(3)
            try:
                use_damaged(c)
            except SharedFileError:
                os._exit(4)  # a lock or region found unusable while in use: documented too

        def use_damaged(c: SharedCache) -> None:
            with c:
                for key, value in values.items():
                    got = c.get(key)
                    assert got is None or got == value, f"{key}: a wrong value after damage"
                for i in range(50):
                    c[f"new{i}"] = b"n" * i
                    got = c.get(f"new{i}")
                    assert got is None or got == b"n" * i
                c.compact()
                list(c)
                len(c)

        status = wait_exit(fork_worker(use, errors), 30)
        assert status in (0, 3, 4), read_errors(errors) or f"child status {status}"
        outcomes["refused" if status == 3 else "opened"] += 1
        with open(shm_path, "r+b") as f:
            f.write(pristine)
    assert outcomes["refused"] > 0 and outcomes["opened"] > 0, outcomes


# -- the reclaimer ------------------------------------------------------------------------------


def test_policy_reclaimer_compacts_while_holding_the_lease(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    with SharedCache(shm_path, 8 * MiB, policy="always", reclaimer_interval_s=0.02) as c:
        assert c.reclaimer is not None and c.reclaimer.running
        c.set_many({f"k{i}": os.urandom(400) for i in range(6000)})
        for i in range(6000):
            if i % 4:
                c.pop(f"k{i}", None)
        deadline = time.monotonic() + 20
        while c.can_compact() > 0 or c.stats().pages_compacted == 0:
            assert time.monotonic() < deadline, "the reclaimer never compacted"
            time.sleep(0.02)
        assert c.reclaimer.stats.leased_ticks > 0
        # Another process's reclaimer finds the lease taken: it ticks, and never scans.
        errors = os.path.join(tmp_path, "errors")

        def other_process() -> None:
            with SharedCache(shm_path, policy="always", reclaimer_interval_s=0.02) as other:
                assert other.reclaimer is not None
                deadline = time.monotonic() + 5
                while other.reclaimer.stats.ticks < 5:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                assert other.reclaimer.stats.leased_ticks == 0

        assert wait_exit(fork_worker(other_process, errors), 30) == 0, read_errors(errors)
    assert not c.reclaimer.running


def test_idle_only_waits_for_every_process_to_be_idle(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    """``idle-only`` sees the host's activity: while another process reads, no compaction;
    once it stops, the reclaimer compacts."""
    errors = os.path.join(tmp_path, "errors")
    stop_r, stop_w = os.pipe()
    with SharedCache(shm_path, 8 * MiB, policy="idle-only", idle_s=0.2, reclaimer_interval_s=0.02) as c:
        c.set_many({f"k{i}": os.urandom(400) for i in range(6000)})
        c.delete_many([f"k{i}" for i in range(6000) if i % 4])
        assert c.can_compact() > 0
        os.set_blocking(stop_r, False)

        def reader() -> None:
            while True:
                try:
                    if os.read(stop_r, 1):
                        return
                except BlockingIOError:
                    pass
                c.get("k0")
                time.sleep(0.001)

        pid = fork_worker(reader, errors)
        assert c.reclaimer is not None
        try:
            ticks = c.reclaimer.stats.ticks
            deadline = time.monotonic() + 10
            while c.reclaimer.stats.ticks < ticks + 20:  # counted, not timed
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert c.stats().pages_compacted == 0, "compacted while another process was busy"
        finally:
            os.write(stop_w, b"x")
            assert wait_exit(pid, 30) == 0, read_errors(errors)
        deadline = time.monotonic() + 20
        while c.stats().pages_compacted == 0:
            assert time.monotonic() < deadline, "never compacted once the host was idle"
            time.sleep(0.02)
    os.close(stop_r)
    os.close(stop_w)


def test_lease_is_exclusive_until_released(cache: SharedCache) -> None:
    assert cache.try_lease(1, 10.0)
    assert cache.try_lease(1, 10.0)  # renewed
    assert not cache.try_lease(2, 10.0)
    cache.release_lease(1)
    assert cache.try_lease(2, 0.05)
    time.sleep(0.1)
    assert cache.try_lease(1, 10.0)  # expired: taken over


def test_policy_errors(shm_path: str) -> None:
    with pytest.raises(TypeError, match="options"):
        SharedCache(shm_path, MiB, batch_size=3)
    with pytest.raises(TypeError, match="shrinker policy"):
        SharedCache(shm_path, MiB, policy=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SharedCache(shm_path, MiB, policy="always", reclaimer_interval_s=0)


def test_dropped_cache_with_reclaimer_warns_and_stops(shm_path: str) -> None:
    c = SharedCache(shm_path, MiB, policy="always", reclaimer_interval_s=0.01)
    reclaimer = c.reclaimer
    assert reclaimer is not None
    with pytest.warns(ResourceWarning, match="dropped without close"):
        del c
        gc.collect()
    deadline = time.monotonic() + 5
    while reclaimer._thread is not None and reclaimer._thread.is_alive():
        assert time.monotonic() < deadline, "the reclaimer thread outlived its cache"
        time.sleep(0.01)


def test_child_has_no_reclaimer_until_asked(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    with SharedCache(shm_path, MiB, policy="always", reclaimer_interval_s=0.01) as c:
        errors = os.path.join(tmp_path, "errors")

        def child() -> None:
            assert c.reclaimer is not None and not c.reclaimer.running
            c["from-child"] = b"1"
            c.start_reclaimer()
            assert c.reclaimer.running
            c.close()

        assert wait_exit(fork_worker(child, errors), 30) == 0, read_errors(errors)
        assert c["from-child"] == b"1"
        assert c.reclaimer is not None and c.reclaimer.running


def test_not_picklable(cache: SharedCache) -> None:
    with pytest.raises(TypeError, match="open it by path"):
        pickle.dumps(cache)


def test_no_warning_on_plain_drop(shm_path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = SharedCache(shm_path, MiB)
        c["k"] = b"v"
        del c
        gc.collect()


def test_random_arguments_raise_exceptions_never_panics(shm_path: str) -> None:
    """Every method and the constructor, with arguments of every wrong type and range: an
    Exception (TypeError, ValueError, KeyError, ...) or a result, never a Rust panic."""
    rng = random.Random(16)
    values = [None, 0, -1, 1, 2**64, -(2**70), 1.5, math.nan, math.inf, -math.inf, "", "x", b"", b"x" * 9000,
              [], {}, object(), True, 1e308, "none", "pickle", "custom", "zstd"]
    methods = ["get", "set", "__getitem__", "__setitem__", "__delitem__", "__contains__", "get_many", "set_many",
               "delete_many", "compact", "try_lease", "release_lease", "expire", "pop", "setdefault"]

    def call(f: object, *args: object, **kwargs: object) -> None:
        try:
            f(*args, **kwargs)  # type: ignore[operator]
        except Exception:  # noqa: BLE001  # any error is fine; a PanicException is a BaseException and fails the test
            pass

    with SharedCache(shm_path, MiB) as c:
        for _ in range(3000):
            call(getattr(c, rng.choice(methods)), *(rng.choice(values) for _ in range(rng.randrange(4))))
        for _ in range(300):
            names = ["maxbytes", "compression", "ttl", "serializer", "create", "mode", "dumps", "loads"]
            kwargs = {k: rng.choice(values) for k in rng.sample(names, rng.randrange(5))}
            call(lambda **kw: zspool._core.SharedCache(shm_path, **kw).close(), **kwargs)
