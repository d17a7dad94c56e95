from magicflow.engine.timers import TimerHeap


def test_timers_fire_in_due_order_once() -> None:
    heap = TimerHeap()
    heap.set("e1", "a", 30.0)
    heap.set("e2", "a", 10.0)
    heap.set("e1", "b", 20.0)
    assert heap.next_due() == 10.0
    assert heap.pop_due(20.0) == [("e2", "a"), ("e1", "b")]
    assert heap.pop_due(20.0) == []
    assert heap.next_due() == 30.0
    assert len(heap) == 1


def test_cancelled_and_moved_timers_are_dropped_lazily() -> None:
    heap = TimerHeap()
    heap.set("e1", "a", 10.0)
    heap.set("e1", "b", 5.0)
    heap.cancel("e1", "b")
    heap.set("e1", "a", 50.0)  # moved later
    assert heap.next_due() == 50.0
    assert heap.pop_due(40.0) == []
    assert heap.pop_due(50.0) == [("e1", "a")]
    assert heap.next_due() is None
    heap.cancel("e1", "missing")
    assert len(heap) == 0
