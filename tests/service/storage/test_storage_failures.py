"""The database failing: errors become StorageError and a transaction is all or nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from veritee.errors import NonceError, StorageError
from veritee.service.storage import Storage, default_sqlite_url, verify_audit_chain

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


def issue(storage: Storage) -> bytes:
    with storage.transaction() as tx:
        return tx.issue_nonce(now=T0, ttl=TTL)


def assert_untouched(storage: Storage, nonce: bytes) -> None:
    """Neither the nonce consumption nor the audit entry of a failed transaction remain."""
    assert verify_audit_chain(storage).count == 0
    with storage.transaction() as tx:
        tx.consume_nonce(nonce, now=T0)  # still unused
        tx.append_audit(
            kind="attest", actor="w", subject="s", decision="accept", details={}, now=T0
        )
    report = verify_audit_chain(storage)
    assert report.ok and report.count == 1


def consume_and_audit(tx: object, nonce: bytes) -> None:
    from veritee.service.storage import Tx

    assert isinstance(tx, Tx)
    tx.consume_nonce(nonce, now=T0)
    tx.append_audit(
        kind="attest",
        actor="w",
        subject="s",
        decision="accept",
        details={"evidence_sha256": "00" * 32},
        now=T0,
    )


def test_exception_rolls_back_everything(storage: Storage) -> None:
    nonce = issue(storage)
    with pytest.raises(RuntimeError, match="boom"), storage.transaction() as tx:
        consume_and_audit(tx, nonce)
        raise RuntimeError("boom")
    assert_untouched(storage, nonce)


def test_nonce_error_after_audit_rolls_back_the_audit(storage: Storage) -> None:
    nonce = issue(storage)
    with pytest.raises(NonceError) as info, storage.transaction() as tx:
        tx.append_audit(
            kind="attest", actor="w", subject="s", decision="accept", details={}, now=T0
        )
        tx.consume_nonce(bytes(32), now=T0)
    assert info.value.code == "nonce_unknown"
    assert_untouched(storage, nonce)


def test_postgresql_backend_terminated_mid_transaction(pg_url: str) -> None:
    db_url = pg_url
    storage = Storage(db_url)
    storage.migrate()
    try:
        nonce = issue(storage)
        with pytest.raises(StorageError) as info, storage.transaction() as tx:
            tx.consume_nonce(nonce, now=T0)
            pid = tx._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            dsn = db_url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
            tx.append_audit(
                kind="attest", actor="w", subject="s", decision="accept", details={}, now=T0
            )
        assert info.value.code == "storage_unavailable"
        assert "SELECT" not in str(info.value) and "INSERT" not in str(info.value)
        # The pool recovers by itself, and nothing of the failed transaction remains.
        assert_untouched(storage, nonce)
        storage.check()
    finally:
        storage.close()


def test_sqlite_connection_lost_mid_transaction(tmp_path: Path) -> None:
    storage = Storage(default_sqlite_url(tmp_path))
    storage.migrate()
    try:
        nonce = issue(storage)
        with pytest.raises(StorageError), storage.transaction() as tx:
            tx.consume_nonce(nonce, now=T0)
            dbapi = tx._conn.connection.dbapi_connection
            assert dbapi is not None
            dbapi.close()
            tx.append_audit(
                kind="attest", actor="w", subject="s", decision="accept", details={}, now=T0
            )
        assert_untouched(storage, nonce)
    finally:
        storage.close()


def test_sqlite_locked_by_another_writer(tmp_path: Path) -> None:
    storage = Storage(default_sqlite_url(tmp_path), busy_timeout=0.3)
    storage.migrate()
    nonce = issue(storage)
    other = sqlite3.connect(tmp_path / "veritee.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageError) as info, storage.transaction() as tx:
            consume_and_audit(tx, nonce)
        assert "locked" in str(info.value)
        assert info.value.code == "storage_unavailable"
        other.execute("ROLLBACK")
        assert_untouched(storage, nonce)
    finally:
        other.close()
        storage.close()


def test_sqlite_file_replaced_by_garbage(tmp_path: Path) -> None:
    storage = Storage(default_sqlite_url(tmp_path))
    storage.migrate()
    storage.close()
    for suffix in ("", "-wal", "-shm"):
        path = tmp_path / f"veritee.db{suffix}"
        if path.exists():
            path.unlink()
    (tmp_path / "veritee.db").write_bytes(b"this is not a database" * 100)
    storage = Storage(default_sqlite_url(tmp_path))
    try:
        with pytest.raises(StorageError):
            storage.check()
        with pytest.raises(StorageError), storage.transaction() as tx:
            tx.issue_nonce(now=T0, ttl=TTL)
    finally:
        storage.close()


def test_unreachable_databases(tmp_path: Path) -> None:
    for url in (
        "postgresql://postgres@127.0.0.1:1/veritee",
        f"sqlite:///{tmp_path}/no/such/folder/veritee.db",
    ):
        storage = Storage(url, busy_timeout=1)
        try:
            with pytest.raises(StorageError) as info:
                storage.check()
            assert info.value.code == "storage_unavailable"
            with pytest.raises(StorageError), storage.transaction() as tx:
                tx.issue_nonce(now=T0, ttl=TTL)
            with pytest.raises(StorageError):
                storage.migrate()
        finally:
            storage.close()


def test_tx_is_unusable_after_its_transaction(storage: Storage) -> None:
    from veritee.errors import UsageError

    with storage.transaction() as tx:
        nonce = tx.issue_nonce(now=T0, ttl=TTL)
    with pytest.raises(UsageError, match="ended"):
        tx.consume_nonce(nonce, now=T0)
    with pytest.raises(UsageError, match="ended"):
        tx.append_audit(kind="attest", actor="a", subject="s", decision=None, details={}, now=T0)
    with pytest.raises(UsageError, match="ended"):
        tx.active_policy()
    assert_untouched(storage, nonce)


def test_sqlite_writer_of_the_same_process_held_too_long(tmp_path: Path) -> None:
    import threading

    storage = Storage(default_sqlite_url(tmp_path), busy_timeout=0.2)
    storage.migrate()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with storage.transaction() as tx:
            tx.issue_nonce(now=T0, ttl=TTL)
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        with pytest.raises(StorageError, match="busy"), storage.transaction() as tx:
            tx.issue_nonce(now=T0, ttl=TTL)
        with storage.transaction(readonly=True) as tx:  # readers are not held up
            assert tx.audit_head()[0] == 0
    finally:
        release.set()
        holder.join(10)
    with storage.transaction() as tx:  # and the lock is free again
        tx.issue_nonce(now=T0, ttl=TTL)
    storage.close()
