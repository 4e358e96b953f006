"""Arrow batches -> records: the prefetching batch iterator."""

from __future__ import annotations

import threading

import pytest

from data_prep.tables import prefetched


def test_prefetched_yields_every_item_in_order_one_ahead_in_another_thread():
    made: list[tuple[int, str]] = []

    def produce():
        for i in range(5):
            made.append((i, threading.current_thread().name))
            yield i

    seen = []
    for i in prefetched(produce()):
        seen.append(i)
        assert len(made) <= i + 2  # never more than one item ahead of the caller
    assert seen == [0, 1, 2, 3, 4]
    assert all(name.startswith("prefetch") for _, name in made)


def test_prefetched_raises_the_producers_error_in_the_caller():
    def produce():
        yield 1
        raise ValueError("truncated batch")

    it = prefetched(produce())
    assert next(it) == 1
    with pytest.raises(ValueError, match="truncated batch"):
        next(it)


def test_prefetched_stops_producing_when_the_caller_stops():
    made = []

    def produce():
        for i in range(100):
            made.append(i)
            yield i

    it = prefetched(produce())
    assert next(it) == 0
    it.close()
    assert len(made) <= 2
