"""The one LRU cache (embedder vectors, LM perplexities, the service's loaded models)."""

from __future__ import annotations

from curation.lru import LRUCache


def test_a_hit_or_a_put_is_a_use_and_the_least_recent_goes_first() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.values() == [1, 3]
    cache.update({"a": 10, "d": 4})  # "a" refreshed, then "c" evicted
    assert cache.values() == [10, 4]
    assert len(cache) == 2


def test_a_capacity_of_zero_caches_nothing() -> None:
    cache: LRUCache[str, int] = LRUCache(0)
    cache.update({"a": 1})
    assert cache.get("a") is None and len(cache) == 0
