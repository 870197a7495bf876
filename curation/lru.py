"""A bounded least-recently-used map: the one cache behind the embedder's vectors, the LM's
perplexities and the service's loaded models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``capacity`` entries (none when ``capacity <= 0``); a hit or a put makes an entry
    the most recent, and the least recent one is evicted first. Safe to share between threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        """The cached value (now the most recent), or ``None``."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Cache ``value`` as the most recent entry, evicting the least recent beyond capacity."""
        self.update({key: value})

    def update(self, items: Mapping[K, V]) -> None:
        """:meth:`put` each item, in order, evicting once at the end."""
        if self.capacity <= 0:
            return
        with self._lock:
            for key, value in items.items():
                self._items[key] = value
                self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def values(self) -> list[V]:
        """The cached values, least recent first (a copy)."""
        with self._lock:
            return list(self._items.values())
