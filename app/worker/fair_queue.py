"""The model worker's queue: one FIFO lane per run, served round-robin.

With one FIFO queue the client that retries fastest holds every slot: under saturation 16 of 32
clients got no round in 60 s while the busiest got 9. Lanes keep each run's jobs in their order
(a run's rounds depend on each other) while the worker takes one task from each lane in turn,
so a run with many jobs waiting delays another run's job by at most one task of its own.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Thread-safe: :meth:`put` from any thread, :meth:`get` from the worker."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[str, deque[T]] = OrderedDict()
        self._ready = threading.Condition()

    def put(self, key: str, item: T) -> None:
        """Append ``item`` to ``key``'s lane (a new lane joins the rotation last)."""
        with self._ready:
            self._lanes.setdefault(key, deque()).append(item)
            self._ready.notify()

    def get(self) -> T:
        """The next item in rotation, waiting for one."""
        with self._ready:
            while not self._lanes:
                self._ready.wait()
            return self._pop()

    def get_nowait(self) -> T:
        """The next item in rotation, or :class:`queue.Empty`."""
        with self._ready:
            if not self._lanes:
                raise queue.Empty
            return self._pop()

    def _pop(self) -> T:
        key, lane = next(iter(self._lanes.items()))
        item = lane.popleft()
        del self._lanes[key]
        if lane:  # back of the rotation: every other lane goes first
            self._lanes[key] = lane
        return item
