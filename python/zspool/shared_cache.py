"""``zspool.SharedCache``: one compacting cache for every process of a host, in a shared file.

:class:`zspool.Cache` for many processes: the entries, their index and the pool they live in
are one file on tmpfs (``/dev/shm/NAME``, or any path), mapped whole by every process that
opens it by path or inherits it through ``fork()`` (gunicorn ``--preload``, multiprocessing,
Celery prefork). N workers share one copy of the data and one warm cache instead of N.
The file's layout, its locks and what happens when a process dies holding one are in
``docs/SHARED.md``.

Everything on the data path is the Rust class :class:`zspool._core.SharedCache` (the
``zspool-shared`` crate), inherited as is; this module adds the ``MutableMapping`` mixins,
the serializer and the argument rules, and the shrinker policy with its reclaimer
(:mod:`zspool.shared_reclaimer`).
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Final, Literal, Self

from zspool import _core
from zspool.cache import _SnapshotItems, _SnapshotValues
from zspool.errors import ConfigError, PoolClosedError
from zspool.pressure import PressureMonitor
from zspool.reclaimer import DEFAULT_INTERVAL_S
from zspool.shared_reclaimer import SharedReclaimer, make_shrinker
from zspool.shrinker_policy import ShrinkerPolicy

__all__ = ["SharedCache", "SHM_DIR"]

Key = str | bytes
_Kind = Literal["none", "pickle", "custom"]
#: Where a bare name (no ``/``) puts the file: POSIX shared memory's tmpfs, as ``shm_open``.
SHM_DIR: Final = "/dev/shm"


class _FromFile:
    """The default of an argument that, left out, takes the value stored in an existing file
    (or the default on creation)."""

    def __repr__(self) -> str:
        return "<the file's value>"


_FROM_FILE: Any = _FromFile()
_MISSING: Any = object()  # a get()'s default that no stored value can be

#: Every SharedCache with a reclaimer, by id, for the fork hook below (a mapping is not
#: hashable, so not a WeakSet).
_with_reclaimer: weakref.WeakValueDictionary[int, SharedCache] = weakref.WeakValueDictionary()


def _after_fork_in_child() -> None:
    for cache in list(_with_reclaimer.values()):
        cache._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def shared_path(path_or_name: str | os.PathLike[str]) -> str:
    """The file of ``path_or_name``: a name without ``/`` is ``/dev/shm/<name>``."""
    if not isinstance(path_or_name, str | os.PathLike):
        raise TypeError(f"path_or_name must be a str or a path, not {type(path_or_name).__name__}")
    path = os.fspath(path_or_name)
    if not isinstance(path, str):
        raise TypeError(f"path_or_name must be a str path, not {type(path).__name__}")
    if "\0" in path:
        raise ValueError(f"{path!r} contains a NUL byte: not a file name")
    if "/" in path:
        return path
    if path in ("", ".", ".."):
        raise ValueError(f"{path!r} is not a file name: give a name such as 'myapp-cache', or a path")
    return os.path.join(SHM_DIR, path)


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def _serializer_args(serializer: Any) -> tuple[_Kind | None, Callable[[Any], bytes], Callable[[bytes], Any]]:
    """(the kind stored in the file, or None for the file's; dumps; loads). Left out, the codec
    is pickle's: used only if the file says its entries are pickled."""
    if serializer is _FROM_FILE or serializer == "pickle":
        return (None if serializer is _FROM_FILE else "pickle"), _pickle_dumps, pickle.loads
    if serializer is None:
        return "none", _pickle_dumps, pickle.loads
    dumps, loads = getattr(serializer, "dumps", None), getattr(serializer, "loads", None)
    if isinstance(serializer, str) or not callable(dumps) or not callable(loads):
        raise TypeError(
            f"serializer must be None, 'pickle', or an object with dumps(obj) -> bytes and loads(bytes) -> obj; "
            f"got {serializer!r}"
        )
    return "custom", dumps, loads


def _compression_arg(compression: Any) -> Literal["none", "lz4", "zstd"] | None:
    if compression is _FROM_FILE:
        return None
    if compression is None:
        return "none"
    if compression == "lz4":
        return "lz4"
    if compression == "zstd":
        return "zstd"
    if not isinstance(compression, str):
        raise TypeError(f"compression must be None, 'lz4' or 'zstd', not {type(compression).__name__}")
    raise ValueError(f"compression={compression!r} is unknown: use None, 'lz4' or 'zstd'")


def _ttl_arg(ttl: Any) -> float | None:
    if ttl is _FROM_FILE:
        return None
    if ttl is None:
        return math.inf  # no default TTL: entries live until evicted or deleted
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl={ttl} is out of range: seconds > 0, or None for no expiry")
    return float(ttl)


def _check_eviction(eviction: Any) -> None:
    if eviction == "sieve":
        return
    if eviction == "lru":
        raise ConfigError(
            "eviction='lru' is not available for SharedCache: it evicts with SIEVE only (a hit sets one "
            "visited bit in the entry's index slot, where LRU would relink a list shared by every process); "
            "use eviction='sieve'"
        )
    raise ValueError(f"eviction={eviction!r} is unknown: SharedCache evicts with 'sieve'")


class SharedCache(_core.SharedCache, MutableMapping[Key, Any]):
    """A byte-budgeted cache in one file, shared by every process of the host that opens it.

    ``SharedCache(path_or_name, maxbytes=..., *, create=True, compression=None, ttl=None,
    eviction="sieve", serializer=None, policy=None, mode=0o600, reclaimer_interval_s=1.0,
    **policy_options)``

    - ``path_or_name``: the file. A name without ``/`` is ``/dev/shm/<name>``; a path should be
      on tmpfs (``/dev/shm``, ``/run``), where the file's pages are memory, not disk.
    - ``create``: create the file if it does not exist (``False``: ``FileNotFoundError``).
      Processes creating the same file at once all succeed and share one file.
    - ``maxbytes``: the budget, in bytes of stored entries (header, key and value after
      compression); entries are evicted with SIEVE to stay within it. An entry is at most
      :data:`~zspool.SHARED_MAX_ENTRY_SIZE` bytes stored (64 KiB: up to 8 KiB entries are
      packed into size classes and compacted; above that each takes the fewest whole pages
      that hold it): a larger one raises :class:`ObjectSizeError` and stores nothing. The file is sized for it once,
      sparse: only pages in use cost memory. 1 MiB to 128 GiB (else :class:`ConfigError`);
      default on creation: 64 MiB.
    - ``compression``: ``None``, ``"lz4"`` or ``"zstd"``; ``ttl``: default seconds to live
      (``None``: until evicted); ``eviction``: ``"sieve"``, the only one a shared cache has;
      ``serializer``: ``None`` (values are ``bytes``), ``"pickle"``, or an object with
      ``dumps``/``loads`` (``bytes`` values are always stored as they are).
    - ``policy``: a shrinker policy (an installed name such as ``"idle-only"``, or an object)
      with ``policy_options``, run by a reclaimer thread in this process every
      ``reclaimer_interval_s`` seconds while this process holds the file's reclaimer lease:
      one process of the host reclaims at a time (:mod:`zspool.shared_reclaimer`).
    - ``mode``: the permissions of a file this call creates, ``0o600`` by default.

    **The configuration is the file's.** An argument left out when opening an existing file
    takes the file's value; one given must equal it, or :class:`ConfigError` names the field
    and both values. A file that is not a shared cache of this version (foreign, truncated,
    garbage, another layout version) raises :class:`SharedFileError` and is left as it is; so
    does an operation that finds a lock in the file that no process could have written (the file
    was overwritten under the cache). A damaged entry is a miss, never returned bytes.

    **Who can read it: anyone who can open the file** can read and change every entry (the
    mode decides who; ``0o600``: the creating user, and root). Keep secrets out of a cache
    whose file others can open, and do not give it a mode wider than the processes that need it.

    **Guarantees.** Linearizable per key: a ``get`` in any process that starts after a
    ``set`` in another returned sees that value or a later one, never a torn or another
    key's value. A process killed at any moment (``SIGKILL`` included, holding any lock) never
    makes another hang or read a wrong value: what it was doing may be lost and entries
    guarded by the lock it held may be dropped (``stats()["recoveries"]``,
    ``entries_dropped_on_recovery``). **A cache may forget, never lie.** Memory comes back:
    deleted, evicted and compacted entries' pages leave the file (``Shmem`` and the file's
    blocks fall).

    **Lifetime.** ``close()`` unmaps the file in this process; the entries stay for the
    others (and for whoever opens the path next). Nothing deletes the file implicitly: no
    resource tracker, no unlink at exit. :meth:`destroy` removes the name; processes that
    have it open keep using it until they close it, and the memory is freed after the last.

    The mapping API is :class:`zspool.Cache`'s: ``c[k]``, ``get``, ``set(k, v, ttl=)``,
    ``del``, ``in``, ``len``, iteration over a snapshot of the keys, ``pop``, ``setdefault``,
    ``clear``, ``get_many``/``set_many``/``delete_many``, ``expire``, ``stats()``,
    ``compact()``. Keys are ``str`` or ``bytes`` (``"a"`` and ``b"a"`` are different keys).
    ``pop`` and ``setdefault`` are atomic across processes (one step under the key's shard
    lock: of the processes that race to pop a key one gets its value; of those that race to
    add one, one stores and all return its value); ``pop`` of a value whose ``loads`` raises
    has removed it. ``popitem`` pops the first key of a snapshot that is still there. After
    ``close()`` every operation raises :class:`PoolClosedError`.

    Fork-safe: a child of ``fork()`` uses the inherited cache at once. It has no reclaimer
    thread (``fork()`` copies only the calling thread); :meth:`start_reclaimer` starts one.
    """

    def __class_getitem__(cls, params: Any) -> types.GenericAlias:
        """``SharedCache[str, bytes]`` in annotations, as for ``dict``."""
        return types.GenericAlias(cls, params)

    def __new__(
        cls,
        path_or_name: str | os.PathLike[str],
        maxbytes: int = _FROM_FILE,
        *,
        create: bool = True,
        compression: Literal["lz4", "zstd"] | None = _FROM_FILE,
        ttl: float | None = _FROM_FILE,
        eviction: Literal["sieve"] = "sieve",
        serializer: Literal["pickle"] | Any | None = _FROM_FILE,
        policy: ShrinkerPolicy | str | None = None,
        mode: int = 0o600,
        reclaimer_interval_s: float = DEFAULT_INTERVAL_S,
        **policy_options: Any,
    ) -> Self:
        path = shared_path(path_or_name)
        if maxbytes is not _FROM_FILE:
            if isinstance(maxbytes, bool) or not isinstance(maxbytes, int):
                raise TypeError(f"maxbytes must be an int (bytes), not {type(maxbytes).__name__}")
            if not 0 <= maxbytes < 2**64:
                raise ValueError(f"maxbytes={maxbytes} is out of range: a budget in bytes, 0..2**64-1")
        if not isinstance(create, bool):
            raise TypeError(f"create must be a bool, not {type(create).__name__}")
        if isinstance(mode, bool) or not isinstance(mode, int):
            raise TypeError(f"mode must be an int (permission bits such as 0o600), not {type(mode).__name__}")
        if not 0 <= mode <= 0o777:
            raise ValueError(f"mode={mode:#o} is out of range: permission bits 0o000..0o777")
        _check_eviction(eviction)
        kind, dumps, loads = _serializer_args(serializer)
        return super().__new__(
            cls,
            path,
            maxbytes=None if maxbytes is _FROM_FILE else maxbytes,
            compression=_compression_arg(compression),
            ttl=_ttl_arg(ttl),
            serializer=kind,
            create=create,
            mode=mode,
            dumps=dumps,
            loads=loads,
        )

    def __init__(
        self,
        path_or_name: str | os.PathLike[str],
        maxbytes: int = _FROM_FILE,
        *,
        create: bool = True,
        compression: Literal["lz4", "zstd"] | None = _FROM_FILE,
        ttl: float | None = _FROM_FILE,
        eviction: Literal["sieve"] = "sieve",
        serializer: Literal["pickle"] | Any | None = _FROM_FILE,
        policy: ShrinkerPolicy | str | None = None,
        mode: int = 0o600,
        reclaimer_interval_s: float = DEFAULT_INTERVAL_S,
        **policy_options: Any,
    ) -> None:
        # The Rust __new__ has opened (or created) the file.
        self._reclaimer: SharedReclaimer | None = None
        self._finalizer: weakref.finalize[..., SharedCache] | None = None
        self._reclaimer_lock = threading.Lock()
        if policy is None:
            if policy_options:
                self.close()
                raise TypeError(f"options {sorted(policy_options)} only apply with a policy")
            return
        if isinstance(reclaimer_interval_s, bool) or not isinstance(reclaimer_interval_s, int | float):
            self.close()
            raise TypeError(f"reclaimer_interval_s must be seconds, not {type(reclaimer_interval_s).__name__}")
        if not (reclaimer_interval_s > 0 and math.isfinite(reclaimer_interval_s)):
            self.close()
            raise ValueError(f"reclaimer_interval_s={reclaimer_interval_s} must be finite seconds > 0")
        try:
            shrinker = make_shrinker(policy, policy_options)
        except BaseException:
            self.close()
            raise
        self._reclaimer = SharedReclaimer(self, shrinker, float(reclaimer_interval_s), PressureMonitor())
        _with_reclaimer[id(self)] = self
        self.start_reclaimer()

    # -- the reclaimer -----------------------------------------------------------------------

    @property
    def reclaimer(self) -> SharedReclaimer | None:
        """The reclaimer of this process (None without ``policy=``); ``reclaimer.stats`` counts
        its ticks and the ticks on which it held the lease."""
        return self._reclaimer

    def start_reclaimer(self) -> None:
        """Start this process's reclaimer thread if it is not running (after ``fork()``, a
        child has none). ``ValueError`` without ``policy=``; ``PoolClosedError`` once closed."""
        reclaimer = self._reclaimer
        if reclaimer is None:
            raise ValueError(f"SharedCache({self.path!r}) has no policy: there is no reclaimer to start")
        self._check_open()
        with self._reclaimer_lock:
            if reclaimer.running:
                return
            reclaimer.start()
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _dropped_open, self.path, reclaimer.stop_event)
            self._finalizer.atexit = False  # at exit the daemon thread just ends: nothing to warn about

    def _after_fork_in_child(self) -> None:
        self._reclaimer_lock = threading.Lock()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._reclaimer is not None:
            self._reclaimer.after_fork_in_child()

    def _check_open(self) -> None:
        if self.closed:
            raise PoolClosedError(f"SharedCache({self.path!r}) is closed")

    # -- the mapping: what the Rust class does not do in one step ------------------------------

    def popitem(self) -> tuple[Key, Any]:
        """Remove and return some entry; ``KeyError`` if the cache is empty."""
        for key in self:
            value = self.pop(key, _MISSING)
            if value is not _MISSING:
                return key, value
        raise KeyError("popitem(): cache is empty")

    def items(self) -> _SnapshotItems:
        """(key, value) pairs of the entries present: the keys of one snapshot, each looked up
        once (an entry gone meanwhile is skipped, not an error)."""
        return _SnapshotItems(self)

    def values(self) -> _SnapshotValues:
        """Values of the entries present, as :meth:`items`."""
        return _SnapshotValues(self)

    def _items(self) -> list[tuple[Key, Any]]:
        keys = list(self)
        return [(k, v) for k, v in zip(keys, self.get_many(keys, _MISSING), strict=True) if v is not _MISSING]

    def __iter__(self) -> Iterator[Key]:
        return super().__iter__()

    def close(self) -> None:
        """Stop this process's reclaimer (giving up the lease) and unmap the file. The entries
        stay in the file for the other processes. Idempotent."""
        finalizer, self._finalizer = getattr(self, "_finalizer", None), None
        if finalizer is not None:
            finalizer.detach()
        reclaimer = getattr(self, "_reclaimer", None)
        if reclaimer is not None:
            reclaimer.stop_event.set()
            if not self.closed:
                try:
                    reclaimer.release_lease(self)
                except Exception:  # noqa: BLE001  # closing never fails over a lease
                    pass
        super().close()
        if reclaimer is not None:
            reclaimer.stop(timeout_s=1.0)

    @staticmethod
    def destroy(path_or_name: str | os.PathLike[str]) -> bool:
        """Remove the file of ``path_or_name`` (a name is ``/dev/shm/<name>``); ``False`` if
        there was none. Processes that have it open keep their entries until they close it;
        a later open of the path creates a new, empty cache. ``SharedFileError`` if the file
        is not a shared cache (it is left in place)."""
        return _core.SharedCache.destroy(shared_path(path_or_name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cls = type(self).__name__
        if self.closed:
            return f"{cls}({self.path!r}, closed)"
        return f"{cls}({self.path!r}, currsize={self.currsize}, maxsize={self.maxsize})"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"cannot pickle {type(self).__name__}({self.path!r}): open it by path in the other process "
            "(or inherit it through fork())"
        )


def _dropped_open(path: str, stop: threading.Event) -> None:
    """Finalizer of a shared cache with a reclaimer thread, dropped without close()."""
    stop.set()
    warnings.warn(
        f"SharedCache({path!r}) was dropped without close(); its reclaimer thread is stopped now "
        "(call close(), or use the cache as a context manager)",
        ResourceWarning,
        stacklevel=2,
    )
