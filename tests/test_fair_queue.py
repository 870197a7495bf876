"""The model worker's fairness: lanes per run served round-robin, and a cap per run."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from app.problems import QueueFull
from app.worker.fair_queue import FairQueue
from app.worker.queue import ModelWorker, Task, TaskContext


def test_lanes_are_served_in_turn_and_keep_their_own_order() -> None:
    q: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        q.put("a", item)
    q.put("b", "b1")
    q.put("c", "c1")
    q.put("b", "b2")
    assert [q.get() for _ in range(6)] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_get_waits_for_a_put_from_another_thread() -> None:
    q: FairQueue[int] = FairQueue()
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(q.get()))
    reader.start()
    q.put("x", 7)
    reader.join(10)
    assert got == [7]


def test_a_run_with_a_backlog_cannot_starve_another_run() -> None:
    worker = ModelWorker(lambda: None, capacity=8, per_key=2)
    worker.start()
    gate, order = threading.Event(), []

    def job(name: str, wait: bool = False) -> Task[None]:
        def run(_ctx: TaskContext) -> None:
            if wait:
                gate.wait(30)
            order.append(name)
        return Task(name, run)

    try:
        with worker.reservation("busy") as slot:  # occupies the worker until the gate opens
            slot.submit(first := job("busy-0", wait=True))
        while not first.future.running():
            threading.Event().wait(0.01)
        tasks: list[Task[Any]] = []
        for key, name in (("a", "a-1"), ("a", "a-2"), ("b", "b-1")):
            with worker.reservation(key) as slot:
                slot.submit(task := job(name))
                tasks.append(task)
        with (pytest.raises(QueueFull, match=r"run a already has 2 jobs waiting "
                                             r"\(queue_per_run = 2\); retry after \d+ s"),
              worker.reservation("a")):
            pass
        assert worker.depth == 3
        gate.set()
        for task in tasks:
            task.future.result(30)
        assert order == ["busy-0", "a-1", "b-1", "a-2"]
        assert worker.depth == 0
        with worker.reservation("a") as slot:  # the cap counts waiting jobs only
            slot.submit(job("a-3"))
    finally:
        worker.drain(0)
        worker.join(10)


def test_runs_refused_a_slot_go_first_when_slots_free_up() -> None:
    worker = ModelWorker(lambda: None, capacity=1, per_key=2)
    worker.start()
    gate = threading.Event()
    try:
        with worker.reservation("busy") as slot:  # runs until the gate opens
            slot.submit(running := Task("busy", lambda _ctx: gate.wait(30)))
        while not running.future.running():
            threading.Event().wait(0.01)
        with worker.reservation("a") as slot:  # a's job waits in the only slot
            slot.submit(queued := Task("a-1", lambda _ctx: None))
        with pytest.raises(QueueFull, match="queue is full"), worker.reservation("b"):
            pass  # b is refused: the queue is full
        gate.set()
        queued.future.result(30)
        assert worker.depth == 0
        with pytest.raises(QueueFull, match="1 runs refused earlier go first"), \
                worker.reservation("a"):
            pass  # the free slot is b's, not a's, whose round just finished
        with worker.reservation(None):  # a task of no run is not held back
            pass
        with worker.reservation("b") as slot:
            slot.submit(Task("b-1", lambda _ctx: None))
    finally:
        gate.set()
        worker.drain(0)
        worker.join(10)
