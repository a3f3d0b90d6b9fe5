"""A bounded, thread-safe LRU map: the verification caches' one building block."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A bounded, thread-safe LRU map."""

    def __init__(self, maxsize: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._max = maxsize

    def get(self, key: K) -> V | None:
        # No lock: each OrderedDict call below is one C call under the GIL (the keys are bytes,
        # ints and tuples of them, hashed in C), so it sees the map before or after any other
        # thread's put/clear. A key evicted between the two calls costs only the recency update.
        data = self._data
        v = data.get(key)
        if v is not None:
            try:
                data.move_to_end(key)
            except KeyError:
                pass
        return v

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the entries, least recently used first."""
        with self._lock:
            return list(self._data.items())

    def values(self) -> list[V]:
        """A snapshot of the values, least recently used first."""
        with self._lock:
            return list(self._data.values())

    def discard(self, key: K) -> None:
        """Forget ``key``'s entry, if there is one."""
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        if not self._data:  # (nothing to clear: no lock; a put racing a clear is unordered anyway)
            return
        with self._lock:
            self._data.clear()
