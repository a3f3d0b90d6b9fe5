"""Micro-benchmark of the storage hot path: one attest round trip = issuing a nonce (no
transaction: it is MAC'd, nothing is written) + one transaction consuming it and appending an
audit entry.

Prints round trips/s (median of several runs) on SQLite (a temp file) and, if the server at
127.0.0.1:5432 answers, on PostgreSQL (a throw-away database), for 1 thread and N threads.

    .venv/bin/python bench/bench_storage.py [--n 2000] [--runs 5] [--threads 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from veritee.service.storage import Storage, default_sqlite_url, verify_audit_chain

TTL = timedelta(minutes=5)


def round_trip(storage: Storage) -> None:
    now = datetime.now(UTC)
    nonce = storage.issue_nonce(now=now, ttl=TTL)
    with storage.transaction() as tx:
        tx.consume_nonce(nonce, now=now)
        tx.append_audit(
            kind="attest",
            actor="bench",
            subject="workload",
            decision="accept",
            details={"evidence_sha256": "ab" * 32, "measurement": "cd" * 48},
            now=now,
        )


def run(storage: Storage, n: int, threads: int) -> float:
    """Round trips per second for ``n`` round trips spread over ``threads`` threads."""
    per = n // threads

    def work() -> None:
        for _ in range(per):
            round_trip(storage)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - start)


def median_of(fn: Callable[[], float], runs: int) -> tuple[float, float, float]:
    figures = [fn() for _ in range(runs)]
    return statistics.median(figures), min(figures), max(figures)


@contextmanager
def sqlite_storage() -> Iterator[Storage]:
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(default_sqlite_url(Path(tmp)))
        storage.migrate()
        try:
            yield storage
        finally:
            storage.close()


@contextmanager
def postgres_storage() -> Iterator[Storage | None]:
    try:
        import psycopg

        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except Exception as exc:
        print(f"PostgreSQL not reachable at 127.0.0.1:5432 ({type(exc).__name__}); skipped")
        yield None
        return
    name = f"veritee_bench_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    storage = Storage(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        storage.migrate()
        yield storage
    finally:
        storage.close()
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="round trips per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    results: dict[str, float] = {}
    for label, factory in (("sqlite", sqlite_storage), ("postgresql", postgres_storage)):
        with factory() as storage:
            if storage is None:
                continue
            run(storage, 200, 1)  # warm up the pool and statement caches
            for threads in (1, args.threads):
                med, lo, hi = median_of(lambda: run(storage, args.n, threads), args.runs)
                results[f"{label}/{threads}"] = med
                print(
                    f"{label:10s} threads={threads}: {med:8.0f} round trips/s "
                    f"(median of {args.runs}; min {lo:.0f}, max {hi:.0f})"
                )
            if label == "sqlite":
                storage._fast_path = False  # every statement through SQLAlchemy, to compare
                med, lo, hi = median_of(lambda: run(storage, args.n, 1), args.runs)
                storage._fast_path = True
                results["sqlite-sqlalchemy/1"] = med
                print(
                    f"{label:10s} threads=1 without the driver fast path: {med:8.0f} "
                    f"round trips/s (median of {args.runs}; min {lo:.0f}, max {hi:.0f})"
                )
            start = time.perf_counter()
            report = verify_audit_chain(storage)
            took = time.perf_counter() - start
            print(
                f"{label:10s} verify_audit_chain: {report.count} entries in {took:.2f} s "
                f"({report.count / took:.0f} entries/s), ok={report.ok}"
            )
    if "sqlite/1" in results:
        print(f"sqlite single-thread vs target 500/s: {results['sqlite/1'] / 500:.2f}x")
    if "sqlite-sqlalchemy/1" in results:
        ratio = results["sqlite/1"] / results["sqlite-sqlalchemy/1"]
        print(f"sqlite fast path / SQLAlchemy-only (1 thread): {ratio:.2f}")
    if "sqlite/1" in results and "postgresql/1" in results:
        print(f"postgresql/sqlite (1 thread): {results['postgresql/1'] / results['sqlite/1']:.2f}")


if __name__ == "__main__":
    main()
