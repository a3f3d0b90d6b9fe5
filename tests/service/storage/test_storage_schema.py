"""Engine setup, migrations (idempotent, concurrent, matching the models), readiness."""

from __future__ import annotations

import hashlib
import importlib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from veritee.errors import NonceError, StorageError, UsageError
from veritee.service.storage import Storage, default_sqlite_url, verify_audit_chain
from veritee.service.storage.models import METADATA, UTCDateTime


def test_check_before_and_after_migrate(db_url: str) -> None:
    storage = Storage(db_url)
    try:
        assert storage.current_revision() is None
        with pytest.raises(StorageError) as info:
            storage.check()
        assert info.value.code == "storage_schema_outdated"
        assert "run the migrations" in str(info.value)
        storage.migrate()
        storage.check()
        storage.migrate()  # idempotent
        storage.migrate()
        storage.check()
        assert storage.current_revision() == storage.head_revision() == "0012"
    finally:
        storage.close()


def test_migration_matches_the_models(storage: Storage) -> None:
    with storage._engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)
    assert diff == []


def _migrate_at_once(stores: list[Storage]) -> list[BaseException]:
    """Run ``migrate`` on every store at the same moment (one thread each); the errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def run(st: Storage) -> None:
        barrier.wait()
        try:
            st.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_concurrent_migrations(db_url: str) -> None:
    stores = [Storage(db_url) for _ in range(3)]
    try:
        assert _migrate_at_once(stores) == []
        for st in stores:
            st.check()
    finally:
        for st in stores:
            st.close()


def test_many_connections_opening_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    """Switching a new file to WAL is refused at once ("database is locked", no busy wait)
    when connections race to do it; each connection must still come up (it once failed
    test_concurrent_migrations about one time in thirty under load)."""
    for round_ in range(10):
        (tmp_path / f"r{round_}").mkdir()
        stores = [Storage(default_sqlite_url(tmp_path / f"r{round_}")) for _ in range(6)]
        try:
            assert _migrate_at_once(stores) == []
            for st in stores:
                with st.transaction(readonly=True) as tx:
                    assert tx._conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            for st in stores:
                st.close()


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    storage = Storage(default_sqlite_url(tmp_path))
    storage.migrate()
    try:
        with storage.transaction(readonly=True) as tx:
            q = tx._conn.exec_driver_sql
            assert q("PRAGMA journal_mode").scalar() == "wal"
            assert q("PRAGMA synchronous").scalar() == 2  # FULL (issue 12.13)
            assert q("PRAGMA foreign_keys").scalar() == 1
            assert q("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        storage.close()
    assert (tmp_path / "veritee.db").is_file()
    assert default_sqlite_url(tmp_path) == f"sqlite:///{(tmp_path / 'veritee.db').resolve()}"


def test_sqlite_write_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    storage = Storage(default_sqlite_url(tmp_path), busy_timeout=0.2)
    storage.migrate()
    other = sqlite3.connect(tmp_path / "veritee.db", timeout=0.1, isolation_level=None)
    try:
        with storage.transaction():
            # BEGIN IMMEDIATE already holds the write lock, before any write of ours.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with storage.transaction(readonly=True):
            other.execute("BEGIN IMMEDIATE")  # a read transaction does not block writers
            other.execute("ROLLBACK")
    finally:
        other.close()
        storage.close()


def test_postgresql_urls_use_psycopg3() -> None:
    storage = Storage("postgresql://user:pw@db.invalid:5432/veritee")
    try:
        assert storage._engine.url.drivername == "postgresql+psycopg"
        assert "pw" not in repr(storage)
    finally:
        storage.close()
    Storage("postgresql+psycopg://u@db.invalid/x").close()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "sqlite://",
        "sqlite:///:memory:",
        "not a url",
        "postgresql+psycopg2://u@h/db",
    ],
)
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(UsageError):
        Storage(url)


def test_closed_storage_refuses_work(db_url: str) -> None:
    storage = Storage(db_url)
    storage.migrate()
    storage.close()
    with pytest.raises(StorageError, match="closed"), storage.transaction():
        pass
    with pytest.raises(StorageError, match="closed"):
        storage.check()


@pytest.mark.parametrize(
    "module",
    [
        "veritee.service.storage",
        "veritee.service.storage.audit",
        "veritee.service.storage.models",
        "veritee.service.storage.storage",
        "veritee.service.storage.tx",
    ],
)
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} in __all__ but missing"


def test_fast_path_time_format_matches_sqlalchemy(tmp_path: Path) -> None:
    """The SQLite hot paths write times exactly as SQLAlchemy does, so both compare as text."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import select

    from veritee.service.storage.models import NONCES, sqlite_time

    storage = Storage(default_sqlite_url(tmp_path))
    storage.migrate()
    moment = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5)))
    try:
        for fast in (True, False):
            storage._fast_path = fast
            with storage.transaction() as tx:
                tx.consume_nonce(tx.issue_nonce(now=moment, ttl=timedelta(seconds=1)), now=moment)
        with storage.transaction(readonly=True) as tx:
            texts = tx._conn.exec_driver_sql("SELECT used_at FROM nonces").scalars().all()
            times = tx._conn.execute(select(NONCES.c.used_at)).scalars().all()
    finally:
        storage.close()
    assert texts == [sqlite_time(moment)] * 2 == ["2025-01-02 08:04:05.000006"] * 2
    assert times == [moment.astimezone(UTC)] * 2


def test_driver_fast_paths_agree_with_sqlalchemy(storage: Storage) -> None:
    """The hot statements run on the driver connection (sqlite3 or psycopg) when the fast path
    is on; with it off, everything goes through SQLAlchemy. Both must read and write the same."""
    from datetime import UTC, datetime, timedelta

    from veritee.errors import NonceError

    t0 = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    with storage.transaction() as tx:
        tx.put_secret_version(name="s", policy="p", kek_id="k", wrapped_dek=b"w", ciphertext=b"c",
                              now=t0)  # fmt: skip
        tx.put_secret_version(name="s", policy="p2", kek_id="k", wrapped_dek=b"w2",
                              ciphertext=b"c2", now=t0 + timedelta(seconds=1))  # fmt: skip
    seen = {}
    for fast in (True, False):
        storage._fast_path = fast
        nonce = storage.issue_nonce(now=t0, ttl=timedelta(minutes=1))
        with storage.transaction() as tx:
            assert (tx._pg is not None or tx._raw is not None) is fast
            tx.consume_nonce(nonce, now=t0)
            entry = tx.append_audit(kind="k", actor="a", subject="s", decision="accept",
                                    details={"fast": fast, "x": [1, "é"]}, now=t0)  # fmt: skip
            seen[fast] = (tx.secret_version("s"), tx.secret_version("s", 1), tx.secret_version("t"))
        assert entry.seq == (1 if fast else 2)
        with pytest.raises(NonceError) as info, storage.transaction() as tx:
            tx.consume_nonce(nonce, now=t0)
        assert info.value.code == "nonce_reused"
    assert seen[True] == seen[False]
    latest, first, absent = seen[True]
    assert latest is not None and (latest.version, latest.policy, latest.created_at) == (
        2, "p2", t0 + timedelta(seconds=1))  # fmt: skip
    assert first is not None and first.ciphertext == b"c" and absent is None
    report = verify_audit_chain(storage)
    assert report.ok and report.count == 2


def test_time_texts_are_the_field_by_field_ones() -> None:
    """``sqlite_time`` and the audit log's ``iso_utc`` (formatted in C) give the very texts of
    the field-by-field formats they replaced: six digits of microseconds also when they are
    zero, four-digit years, UTC; years before 1000 as strftime writes them in the audit log."""
    import random
    from datetime import UTC, datetime, timedelta, timezone

    from veritee.service.storage.audit import iso_utc
    from veritee.service.storage.models import sqlite_time

    def fields(m: datetime) -> str:
        u = m.astimezone(UTC)
        return (f"{u.year:04d}-{u.month:02d}-{u.day:02d} "
                f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}")  # fmt: skip

    rng = random.Random(15)
    years = [1, 9, 99, 999, 1000, 1970, 2025, 9998]
    for _ in range(5000):
        moment = datetime(
            rng.choice([*years, rng.randint(1, 9998)]), rng.randint(1, 12), rng.randint(1, 28),
            rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
            rng.choice([0, 1, 999_999, rng.randint(0, 999_999)]),
            tzinfo=timezone(timedelta(minutes=rng.choice([0, 60, -300, 330]))),
        )  # fmt: skip
        try:
            moment.astimezone(UTC)
        except OverflowError:  # year 1 minus an offset: not a time the service meets
            continue
        assert sqlite_time(moment) == fields(moment)
        assert iso_utc(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        utc = moment.astimezone(UTC)  # tzinfo UTC itself: the texts' shortcut
        assert utc.tzinfo is UTC
        assert sqlite_time(utc) == fields(moment)
        assert iso_utc(utc) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert sqlite_time(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02 03:04:05.000000"
    assert iso_utc(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05.000000Z"


def _migrate_to(storage: Storage, revision: str, *, down: bool = False) -> None:
    from alembic import command

    cfg = storage._alembic_config()
    with storage._engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _nonce_rows(storage: Storage) -> set[tuple[bytes, str]]:
    with storage._engine.connect() as conn:
        rows = conn.execute(text("SELECT nonce_sha256, purpose FROM nonces")).all()
    return {(bytes(r[0]), str(r[1])) for r in rows}


def test_migration_0012_keeps_spent_nonces_up_and_down(db_url: str) -> None:
    """0012 (nonces keyed by expiry and hash): the spent nonces of an older schema survive the
    upgrade and stay spent; a downgrade keeps them too, and the upgrade again."""
    storage = Storage(db_url, nonce_key=bytes(range(32)))
    try:
        _migrate_to(storage, "0011")
        now = datetime.now(UTC)
        spent = [storage.issue_nonce(now=now, ttl=timedelta(minutes=5)) for _ in range(3)]
        fresh = storage.issue_nonce(now=now, ttl=timedelta(minutes=5))
        issued = now.replace(microsecond=now.microsecond // 1000 * 1000)
        with storage._engine.begin() as conn:  # as the code of 0011 spent them
            for i, nonce in enumerate(spent):
                issued_at, expires_at = storage._nonces.check(nonce, now=now, purpose="attest")
                conn.execute(
                    text(
                        "INSERT INTO nonces (nonce_sha256, purpose, issued_at, expires_at, "
                        "used_at) VALUES (:h, 'attest', :i, :e, :u)"
                    ),
                    {
                        "h": hashlib.sha256(nonce).digest(),
                        "i": UTCDateTime().process_bind_param(issued_at, conn.dialect),
                        "e": UTCDateTime().process_bind_param(expires_at, conn.dialect),
                        "u": UTCDateTime().process_bind_param(
                            issued + timedelta(seconds=i), conn.dialect
                        ),
                    },
                )
        before = _nonce_rows(storage)
        assert len(before) == 3
        storage.migrate()
        assert storage.current_revision() == "0012"
        assert _nonce_rows(storage) == before
        for nonce in spent:
            with pytest.raises(NonceError) as info, storage.transaction() as tx:
                tx.consume_nonce(nonce, now=now)
            assert info.value.code == "nonce_reused"
        with storage.transaction() as tx:
            tx.consume_nonce(fresh, now=now)
        with pytest.raises(NonceError) as info, storage.transaction() as tx:
            tx.consume_nonce(fresh, now=now)
        assert info.value.code == "nonce_reused"
        after = _nonce_rows(storage)
        assert len(after) == 4
        with storage.transaction() as tx:  # the purge by expiry, limited, on the new key
            assert tx.purge_nonces(now=now + timedelta(minutes=10), limit=2) == 2
        assert len(_nonce_rows(storage)) == 2
        kept = _nonce_rows(storage)
        _migrate_to(storage, "0011", down=True)
        assert storage.current_revision() == "0011"
        assert _nonce_rows(storage) == kept
        with storage._engine.connect() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("nonces")}
            key = inspect(conn).get_pk_constraint("nonces")["constrained_columns"]
        assert "ix_nonces_expires_at" in indexes
        assert key == ["nonce_sha256"]
        storage.migrate()
        assert _nonce_rows(storage) == kept
        with storage._engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), METADATA)
            key = inspect(conn).get_pk_constraint("nonces")["constrained_columns"]
        assert diff == []
        assert key == ["expires_at", "nonce_sha256"]
    finally:
        storage.close()


def test_sqlite_nonces_are_one_btree(tmp_path: Path) -> None:
    """On SQLite the spent nonces are a WITHOUT ROWID table with no other index."""
    storage = Storage(default_sqlite_url(tmp_path))
    try:
        storage.migrate()
    finally:
        storage.close()
    conn = sqlite3.connect(tmp_path / "veritee.db")
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'nonces'").fetchone()
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'nonces'"
        ).fetchall()
    finally:
        conn.close()
    assert "WITHOUT ROWID" in sql
    assert "PRIMARY KEY (expires_at, nonce_sha256)" in sql
    assert indexes == []  # the key is the table's own b-tree
