"""``zspool.Cache`` dressed as a ``cachetools.Cache``, so that cachetools' own tests can run
against it (``tests/test_cachetools_suite.py``).

What the adapter maps, and nothing more:

- **Keys.** cachetools' tests use ints and tuples (``hashkey(...)``) as keys; zspool keys are
  ``str`` or ``bytes``. A key is stored as its pickle, with every number that equals an int
  pickled as that int (``1``, ``1.0`` and ``True`` are one dict key, so one cache key), padded
  to :data:`KEY_WIDTH` bytes (``pickle.loads`` ignores what follows a pickle), and decoded
  back on iteration and ``popitem()``.
- **Sizes.** cachetools counts ``getsizeof(value)`` units (1 per item by default); zspool
  counts bytes. One unit is :data:`UNIT` bytes: every entry is stored in exactly
  ``UNIT * getsizeof(value)`` bytes (the value's pickle is padded to that), and ``maxsize``
  and ``currsize`` are reported in units. ``maxsize=math.inf`` is 2**62 bytes.
- **Values** go through ``serializer`` (pickle, padded as above); ``bytes`` values would be
  stored unpadded, so the suite does not use them.

- **Type.** The adapter also lists ``cachetools.Cache`` among its bases, after
  ``zspool.Cache``, so that cachetools' decorators recognise it (their ``cache_info()``
  reports ``maxsize`` only for a ``cachetools.Cache``). Every method it calls is
  ``zspool.Cache``'s or the adapter's; cachetools' ``__init__`` never runs.

Everything else (eviction, replacement, ``__missing__``, ``setdefault``, ``pop``,
``popitem``, ``clear``, copying, pickling, ``==``) is zspool's own.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterator
from typing import Any, Self

import cachetools
import zspool
from zspool.cached import _canonical

#: Bytes every encoded key takes.
KEY_WIDTH = 100
#: Bytes per cachetools size unit.
UNIT = 256
#: An entry's bytes besides its value: flags (1), key length (1), key.
OVERHEAD = 2 + KEY_WIDTH
INFINITE_BYTES = 2**62

_MISSING = object()


def encode_key(key: Any) -> bytes:
    data = pickle.dumps(_canonical(key), pickle.HIGHEST_PROTOCOL)
    if len(data) > KEY_WIDTH:
        raise ValueError(
            f"the adapter's keys pickle to at most {KEY_WIDTH} bytes; {key!r} takes {len(data)}"
        )
    return data.ljust(KEY_WIDTH, b"\0")


def decode_key(data: str | bytes) -> Any:
    assert isinstance(data, bytes)
    return pickle.loads(data)


class SizedPickle:
    """The serializer: a value's pickle, padded so that its entry takes ``UNIT * size`` bytes."""

    def __init__(self, getsizeof: Callable[[Any], int]) -> None:
        self.getsizeof = getsizeof

    def dumps(self, value: Any) -> bytes:
        size = self.getsizeof(value)
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        if size < 1:
            raise ValueError(f"getsizeof({value!r}) = {size}: the adapter stores sizes >= 1")
        if len(data) > UNIT * size - OVERHEAD:
            raise ValueError(
                f"{value!r} pickles to {len(data)} bytes, more than its {size} units hold"
            )
        return data.ljust(UNIT * size - OVERHEAD, b"\0")

    loads = staticmethod(pickle.loads)


class ZspoolCache(zspool.Cache, cachetools.Cache):  # type: ignore[misc]
    """``zspool.Cache`` with cachetools' constructor ``(maxsize, getsizeof=None)``."""

    EVICTION = "sieve"

    def __new__(cls, maxsize: float, getsizeof: Callable[[Any], int] | None = None) -> Self:
        sizeof = getsizeof if getsizeof is not None else cls.getsizeof
        return super().__new__(
            cls,
            _maxbytes(maxsize),
            serializer=SizedPickle(sizeof),
            eviction=cls.EVICTION,  # type: ignore[arg-type]
        )

    def __init__(self, maxsize: float, getsizeof: Callable[[Any], int] | None = None) -> None:
        super().__init__(_maxbytes(maxsize), eviction=self.EVICTION)  # type: ignore[arg-type]
        if getsizeof is not None:
            self.getsizeof = getsizeof  # type: ignore[method-assign,assignment]
        kwargs = {} if getsizeof is None else {"getsizeof": getsizeof}
        self._constructor_args = ((maxsize,), kwargs)

    @staticmethod
    def getsizeof(value: Any) -> int:
        return 1

    @property
    def maxsize(self) -> float:  # type: ignore[override]
        maxbytes = super().maxsize
        return math.inf if maxbytes == INFINITE_BYTES else maxbytes // UNIT

    @property
    def currsize(self) -> int:  # type: ignore[override]
        return super().currsize // UNIT

    def __getitem__(self, key: Any) -> Any:
        value = super().get(encode_key(key), _MISSING)
        if value is not _MISSING:
            return value
        missing = getattr(type(self), "__missing__", None)
        if missing is not None:
            return missing(self, key)
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(encode_key(key), value)

    def __delitem__(self, key: Any) -> None:
        try:
            super().__delitem__(encode_key(key))
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return super().__contains__(encode_key(key))

    def __iter__(self) -> Iterator[Any]:
        return (decode_key(k) for k in super().__iter__())

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(encode_key(key), default)

    def pop(self, key: Any, *default: Any) -> Any:
        try:
            return super().pop(encode_key(key), *default)
        except KeyError:
            raise KeyError(key) from None

    def popitem(self) -> tuple[Any, Any]:
        key, value = super().popitem()
        return decode_key(key), value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return super().setdefault(encode_key(key), default)

    def _items(self) -> list[tuple[Any, Any]]:
        return [(decode_key(k), v) for k, v in super()._items()]


class ZspoolLRUCache(ZspoolCache):
    """As :class:`ZspoolCache`, evicting the least recently used entry."""

    EVICTION = "lru"


def _maxbytes(maxsize: float) -> int:
    if maxsize < 0:
        raise ValueError(f"maxsize={maxsize} must be >= 0")
    return INFINITE_BYTES if math.isinf(maxsize) else int(maxsize) * UNIT
