"""veritee._lru.Lru: bounded, least recently used out first, safe under threads (its ``get``
takes no lock since issue 15 item 2's third pass)."""

from __future__ import annotations

import threading

from veritee._lru import Lru


def test_bounded_and_least_recently_used_out_first() -> None:
    lru: Lru[int, str] = Lru(2)
    lru.put(1, "a")
    lru.put(2, "b")
    assert lru.get(1) == "a"  # 1 is now the most recent
    lru.put(3, "c")
    assert lru.get(2) is None and lru.get(1) == "a" and lru.get(3) == "c"
    assert lru.values() == ["a", "c"] and len(lru) == 2
    lru.clear()
    assert lru.get(1) is None and lru.values() == [] and len(lru) == 0


def test_concurrent_gets_puts_and_clears_stay_bounded_and_consistent() -> None:
    lru: Lru[int, int] = Lru(8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(20_000):
                k = (i * 7 + seed) % 32
                if i % 3:
                    v = lru.get(k)
                    assert v is None or v == k * 2
                else:
                    lru.put(k, k * 2)
                if i % 5000 == 0:
                    lru.clear()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(lru.values()) <= 8


def test_the_amd_chain_cache_is_an_lru_that_hits_only_inside_an_entrys_window() -> None:
    """``amd.ChainCache`` is built on this LRU (one LRU class in the code): bounded, least
    recently used out first, and an entry outside its validity window at ``at`` is a miss."""
    from datetime import UTC, datetime
    from typing import Any, cast

    from veritee.evidence.amd import ChainCache, VerifiedChain

    def entry(year: int) -> VerifiedChain:
        return cast(Any, type("E", (), {"not_before": datetime(year, 1, 1, tzinfo=UTC),
                                        "not_after": datetime(year, 12, 31, tzinfo=UTC)})())  # fmt: skip

    cache = ChainCache(2)
    a, b, c = entry(2025), entry(2025), entry(2025)
    cache.put(("a",), a)
    cache.put(("b",), b)
    assert cache.get(("a",), datetime(2025, 6, 1, tzinfo=UTC)) is a  # a is now the most recent
    cache.put(("c",), c)
    assert len(cache) == 2 and cache.get(("b",), datetime(2025, 6, 1, tzinfo=UTC)) is None
    assert cache.get(("a",), datetime(2026, 6, 1, tzinfo=UTC)) is None  # outside its window
    assert (cache.hits, cache.misses) == (1, 2)
    cache.clear()
    assert len(cache) == 0 and (cache.hits, cache.misses) == (0, 0)
