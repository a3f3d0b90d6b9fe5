"""/readyz of a running `veritee serve` reflects the ability to decide and audit (issue 12 item 11).

It answered 200 while every write failed and hung while the database stalled: it only read. Now
it takes a write as a decision does, within ``readiness_timeout`` (2 s), and logs its 503s.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready

BOUND = 2.0  # Settings.readiness_timeout


@contextmanager
def _serve(data: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen([*VERITEE, "serve", "--data", str(data), "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, proc
    finally:
        stop(proc)


def _log(proc: subprocess.Popen[bytes]) -> str:
    stop(proc)
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace")


def test_a_locked_database_is_503_within_the_bound_and_ready_again_after(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    with _serve(data) as (url, proc):
        wait_ready(url, proc)
        other = sqlite3.connect(data / "veritee.db", isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")  # another process holds the database
            _assert_503_within_bound(url)
        finally:
            other.execute("ROLLBACK")
            other.close()
        _wait_ready_again(url)
        assert "not ready: storage_timeout" in _log(proc)


def _assert_503_within_bound(url: str) -> None:
    for _ in range(2):  # the first probe waits; the next answers at once
        start = time.monotonic()
        r = httpx.get(url + "/readyz", timeout=30)
        took = time.monotonic() - start
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "storage_timeout"
        assert took < BOUND + 1.5, took


def _wait_ready_again(url: str) -> None:
    deadline = time.monotonic() + 15
    while httpx.get(url + "/readyz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the lock was released"
        time.sleep(0.2)


def test_postgresql_with_a_table_locked_is_503_within_the_bound(tmp_path: Path) -> None:
    """Another connection holds an exclusive lock on the table decisions write to."""
    import psycopg
    from tests.pgutil import temporary_database

    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    with temporary_database() as db_url, _serve(data, "--db", db_url) as (url, proc):
        wait_ready(url, proc)
        plain = db_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as other:
            other.execute("LOCK TABLE nonces IN ACCESS EXCLUSIVE MODE")
            _assert_503_within_bound(url)
            other.rollback()
        _wait_ready_again(url)
        assert "not ready: storage_timeout" in _log(proc)


def test_a_corrupt_table_is_503(tmp_path: Path) -> None:
    """The nonce table's pages are overwritten: reads of the schema still work (the old probe
    said ready), but no decision can be recorded."""
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    db = data / "veritee.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'nonces'").fetchone()[
            0
        ]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(b"\xa5" * page)
    with _serve(data) as (url, proc):
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, _log(proc)
            try:
                r = httpx.get(url + "/readyz", timeout=30)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "storage_unavailable"
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200  # alive, not ready
        log = _log(proc)
    assert "not ready: storage_unavailable" in log and "malformed" in log


def test_a_database_that_refuses_every_write_is_503(tmp_path: Path) -> None:
    """Writes fail, reads work (as on a full disk or a read-only file; the tests run as root,
    which file modes do not stop, so a trigger refuses the writes here)."""
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    with _serve(data) as (url, proc):
        wait_ready(url, proc)
        with sqlite3.connect(data / "veritee.db") as conn:
            conn.execute("CREATE TRIGGER no_writes BEFORE INSERT ON nonces "
                         "BEGIN SELECT RAISE(ABORT, 'disk full'); END")  # fmt: skip
        conn.close()
        r = httpx.get(url + "/readyz", timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["code"].startswith("storage_") and "disk full" in r.json()["detail"]
        assert httpx.post(url + "/v1/challenge", timeout=30).status_code == 200  # still serving
        assert "not ready: storage_" in _log(proc)
