"""Out of memory: when the OS refuses pages (a low ``RLIMIT_AS``), allocations raise
``PoolFullError``, nothing aborts the process, no object is lost and the stats stay true.

Each scenario runs in a subprocess (the limit is per process and hard to undo safely); a
Rust abort there shows up as a negative return code (SIGABRT), a lost object as a failed
assertion. The subprocess avoids Python allocations while the limit is low: buffers, data
and the handle list are made before it is set, and objects are checked with ``read_into``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import array, resource, sys
    from zspool import Pool, PoolFullError

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    SIZES = [24, 100, 700, 1500, 3000, 4096, 9000, 70000]
    datas = [bytes([i + 1]) * n for i, n in enumerate(SIZES)]
    buf = bytearray(max(SIZES))
    view = memoryview(buf)
    # Arrays, not lists: a list would keep every handle's int object alive, and 400,000 of
    # them under the limit used up the interpreter's reserve below at large headrooms.
    handles = array.array("Q", bytes(8 * 400_000))
    kinds = array.array("B", bytes(400_000))
    FREED = 255  # a kind no object has: the object was freed
    pool = Pool(name="oom")
    stored = 0
    headroom = int(sys.argv[1]) * 2**20
    # A reserve for the interpreter itself: every refusal raises PoolFullError, which
    # allocates a few small objects (the exception, its message, a traceback). Leave a few of
    # pymalloc's arenas mapped but nearly empty (an arena goes back to the OS only when all of
    # it is free), so those come from memory already mapped, never from a new arena the low
    # limit would refuse: that made the interpreter, not zspool, raise MemoryError at some
    # headrooms.
    spare = [bytearray(48) for _ in range(400_000)]
    reserve = spare[::5_000]
    del spare
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom, hard))

    refusals = [0] * len(SIZES)  # refusals in a row, per size
    refused_total = 0
    errors = []
    i = 0
    # Fill until every size has been refused several times in a row.
    while min(refusals) < 3 and stored < len(handles):
        k = i % len(SIZES)
        i += 1
        try:
            handles[stored] = pool.store(datas[k])
            kinds[stored] = k
            stored += 1
            refusals[k] = 0
        except PoolFullError as exc:
            refusals[k] += 1
            refused_total += 1
            if not isinstance(exc, MemoryError):
                errors.append("PoolFullError is not a MemoryError")

    def check(n):
        bad = 0
        for j in range(n):
            k = kinds[j]
            size = SIZES[k]
            got = pool.read_into(handles[j], buf)
            if got != size or view[:size] != datas[k]:
                bad += 1
        return bad

    bad = check(stored)
    # Free every 4th object: the pool reuses its own pages, so stores succeed again.
    freed = 0
    for j in range(0, stored, 4):
        pool.free(handles[j])
        kinds[j] = FREED
        freed += 1
    again = 0
    for _ in range(freed // 2):
        try:
            pool.store(datas[0])
            again += 1
        except PoolFullError:
            break
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    live = [j for j in range(stored) if kinds[j] != FREED]
    bad += sum(1 for j in live if pool.load(handles[j]) != datas[kinds[j]])
    stats = pool.stats()
    expected = len(live) + again
    print(f"stored={stored} refused={refused_total} bad={bad} freed={freed} again={again} objects={stats.objects}")
    assert not errors, errors
    assert min(refusals) >= 3, f"filled {stored} objects without every size refused 3 times in a row: {refusals}"
    assert stored > 1000, f"only {stored} objects fit: the limit is too low to test anything"
    assert bad == 0, f"{bad} objects lost or corrupted"
    assert again > 0, "no store succeeded after freeing"
    assert stats.objects == expected == len(pool), (stats.objects, expected)
    assert stats.payload_bytes == sum(SIZES[kinds[j]] for j in live) + again * SIZES[0]
    pool.close()
    print("OK")
    """
)


@pytest.mark.parametrize("headroom_mib", [48, 160])
def test_os_refusing_memory_is_pool_full_and_loses_nothing(headroom_mib: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(headroom_mib)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"return code {result.returncode} (negative: killed by a signal, e.g. a Rust abort)\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr[-3000:]}"
    )
    assert result.stdout.strip().endswith("OK"), result.stdout
    print(result.stdout.splitlines()[0])  # stored=... refused=... (docs/HARDENING.md quotes it)
