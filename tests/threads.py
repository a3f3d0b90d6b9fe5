"""The tests' one way to call a function from several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def differing_from_threads(
    call: Callable[[], Any], want: Any, *, threads: int = 4, calls: int = 200
) -> list[Any]:
    """Call ``call`` ``calls`` times in each of ``threads`` threads started together; return
    the answers that differ from ``want`` (none, for a function safe to share)."""
    differing: list[Any] = []
    barrier = threading.Barrier(threads)

    def run() -> None:
        barrier.wait()
        for _ in range(calls):
            got = call()
            if got != want:
                differing.append(got)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return differing
