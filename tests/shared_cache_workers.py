"""The workers of the SharedCache stress and kill tests, and the two runs that drive them.

Each run is made to execute in a fresh, small Python process (``python -m`` of this module's
:func:`main`, see :func:`run_fresh`), not in pytest's: it forks a worker per respawn, hundreds
of times, and a fork costs what the forking process's page tables cost, which after a few
hundred tests in one pytest process is a lot.

Each key has one writer (key i belongs to worker i % N, and a respawned worker takes over its
predecessor's keys); versions are CLOCK_MONOTONIC ns, so they only grow for a key, across
respawns too. Every read is checked: the value is whole (crc32), is the value of that key, was
written by its owner, its version never goes backwards for the reader, and a worker reading
its own key gets exactly what it last wrote or a miss (a cache may forget, never lie). A failed
check ends the worker with its traceback in an error file, which fails the run. Workers count
their operations in an anonymous shared page; one that stops counting for 10 s is hung.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shared_cache_support import check_value, fork_worker, make_value, read_errors, wait_exit

from zspool import SharedCache

MiB = 1 << 20
N_KEYS = 1500
HANG_S = 10.0


class Board:
    """An anonymous shared page: a stop flag and one operation counter per worker."""

    def __init__(self, n: int) -> None:
        self.mem = mmap.mmap(-1, 8 * (n + 1))
        self.words = memoryview(self.mem).cast("Q")

    @property
    def stop(self) -> bool:
        return self.words[0] != 0

    def set_stop(self) -> None:
        self.words[0] = 1

    def bump(self, worker: int) -> None:
        self.words[1 + worker] += 1

    def progress(self, worker: int) -> int:
        return int(self.words[1 + worker])


def run_worker(
    path: str, inherited: SharedCache, board: Board, wid: int, n: int, compactor: bool, seed: int
) -> None:
    rng = random.Random(seed)
    cache = inherited if rng.random() < 0.5 else SharedCache(path)
    own = [f"key{i}" for i in range(N_KEYS) if i % n == wid]
    everyone = [f"key{i}" for i in range(N_KEYS)]
    written: dict[str, int | None] = {}  # own keys this process wrote: version, or None once deleted
    seen: dict[str, int] = {}

    def check(key: str, value: bytes | None) -> None:
        if value is None:
            return
        writer, version = check_value(key, value)
        assert writer == int(key[3:]) % n, f"{key} holds worker {writer}'s value; its owner is {int(key[3:]) % n}"
        assert version >= seen.get(key, 0), f"{key}: version went backwards ({version} < {seen[key]})"
        seen[key] = version
        if key in written:
            assert written[key] == version, f"{key}: read version {version}, this worker last wrote {written[key]}"

    def store(key: str) -> bytes:
        version = time.monotonic_ns()
        written[key] = version
        return make_value(key, wid, version, rng.choice((40, 100, 300, 700, 1500, 2500)))

    parent = os.getppid()
    ops = 0
    while not board.stop:
        ops += 1
        if ops % 256 == 0 and os.getppid() != parent:
            return  # the run that started this worker is gone
        op = rng.random()
        if compactor and op < 0.3:
            cache.compact(time_budget=0.005)
        elif op < 0.35:
            key = rng.choice(own)
            value = store(key)
            cache[key] = value
        elif op < 0.45:
            batch = rng.sample(own, 8)
            cache.set_many({key: store(key) for key in batch})
        elif op < 0.5:
            key = rng.choice(own)
            cache.pop(key, None)
            written[key] = None
        elif op < 0.6:
            batch = rng.sample(everyone, 16)
            for key, value in zip(batch, cache.get_many(batch)):
                check(key, value)
        elif op < 0.62:
            deleted = rng.sample(own, 4)
            cache.delete_many(deleted)
            written.update(dict.fromkeys(deleted))
        else:
            key = rng.choice(own) if op < 0.7 else rng.choice(everyone)
            value = cache.get(key)
            if key in written and written[key] is None:
                assert value is None, f"{key}: deleted by its only writer, then read back"
            check(key, value)
        board.bump(wid)


def spawn(path: str, cache: SharedCache, board: Board, wid: int, n: int, compactors: int, errors: str) -> int:
    seed = random.randrange(2**32)
    return fork_worker(lambda: run_worker(path, cache, board, wid, n, wid < compactors, seed), errors)


def verify_cache(path: str, n: int) -> None:
    """After the workers: every entry is intact and its owner's, and the cache still works."""
    with SharedCache(path) as c:
        keys = list(c)
        for key, value in zip(keys, c.get_many(keys)):
            if value is not None:
                writer, _ = check_value(key, value)
                assert writer == int(key[3:]) % n
        c.set_many({f"after{i}": b"a%d" % i for i in range(200)})
        assert c.get_many([f"after{i}" for i in range(200)]).count(None) < 200
        c.compact()
        assert c.currsize <= c.maxsize
        assert len(c) == len(list(c))



def stress(path: str, errors: str, seconds: float) -> dict[str, Any]:
    """8 workers (2 of them compacting too) on a 1 MiB lz4 cache for ``seconds``."""
    n = 8
    board = Board(n)
    with SharedCache(path, MiB, compression="lz4") as cache:
        pids = [spawn(path, cache, board, wid, n, 2, errors) for wid in range(n)]
        try:
            started = time.monotonic()
            last = [0] * n
            while time.monotonic() - started < seconds:
                time.sleep(2)
                now = [board.progress(w) for w in range(n)]
                assert all(a > b for a, b in zip(now, last)), f"a worker made no progress in 2 s: {now}"
                last = now
                assert not os.path.exists(errors), read_errors(errors)
        finally:
            board.set_stop()
            statuses = [wait_exit(pid, 30) for pid in pids]
        assert statuses == [0] * n, read_errors(errors)
        stats = cache.stats().as_dict()
    verify_cache(path, n)
    return {"ops": sum(board.progress(w) for w in range(n)), "stats": stats}


def kill_loop(path: str, errors: str, kills_wanted: int) -> dict[str, Any]:
    """8 workers, 2 compacting in a loop, on a 1 MiB cache kept over budget; SIGKILL a random
    one at a random moment and respawn it, ``kills_wanted`` times; then let the survivors run."""
    n, compactors = 8, 2
    board = Board(n)
    rng = random.Random(1616)
    kills = 0
    with SharedCache(path, MiB) as cache:
        pids = {wid: spawn(path, cache, board, wid, n, compactors, errors) for wid in range(n)}
        last_progress = {wid: (board.progress(wid), time.monotonic()) for wid in range(n)}
        started = time.monotonic()
        try:
            while kills < kills_wanted:
                assert time.monotonic() - started < 150, f"only {kills} kills in 150 s"
                time.sleep(rng.uniform(0.0, 0.03))
                for wid, pid in pids.items():
                    done, status = os.waitpid(pid, os.WNOHANG)
                    assert not done, f"worker {wid} exited by itself ({status}):\n{read_errors(errors)}"
                wid = rng.randrange(n)
                os.kill(pids[wid], signal.SIGKILL)
                assert wait_exit(pids[wid], 10) == -signal.SIGKILL
                kills += 1
                pids[wid] = spawn(path, cache, board, wid, n, compactors, errors)
                now = time.monotonic()
                for w in range(n):
                    count = board.progress(w)
                    if count != last_progress[w][0]:
                        last_progress[w] = (count, now)
                    assert now - last_progress[w][1] < HANG_S, f"worker {w} made no progress for {HANG_S} s (hung)"
            kill_s = time.monotonic() - started
            # Then the survivors run unharmed for a while: every one must still make progress.
            before = [board.progress(w) for w in range(n)]
            time.sleep(2)
            after = [board.progress(w) for w in range(n)]
            assert all(a > b for a, b in zip(after, before)), f"hung after the kills: {before} -> {after}"
        finally:
            board.set_stop()
            statuses = [wait_exit(pid, 30) for pid in pids.values()]
        assert statuses == [0] * n, read_errors(errors)
        assert not os.path.exists(errors), read_errors(errors)
        stats = cache.stats().as_dict()
    verify_cache(path, n)
    return {"kills": kills, "kill_s": kill_s, "ops": sum(board.progress(w) for w in range(n)), "stats": stats}


def run_fresh(function: str, *args: Any, timeout_s: float) -> dict[str, Any]:
    """``function(*args)`` of this module in a new Python process; its result. Fails with the
    process's stderr (the traceback of a failed check) if it does not succeed in time."""
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "shared_cache_workers", function, json.dumps(args)],
        capture_output=True, text=True, timeout=timeout_s, env=env, cwd=here,
    )
    assert proc.returncode == 0, f"{function} failed ({proc.returncode}):\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def main() -> None:
    function, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(globals()[function](*args)), flush=True)


if __name__ == "__main__":
    main()
