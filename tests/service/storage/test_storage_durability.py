"""SQLite durability (issue 12 item 13): every connection the service uses commits durably.

With ``synchronous=NORMAL`` in WAL mode a power loss may drop the last commits, that is audit
records and nonce uses already acknowledged to clients. FULL syncs the WAL at each commit.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.settings import Settings
from veritee.service.storage import Storage

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def _settings_of_connections(storage: Storage, n: int) -> list[tuple[int, str, bool]]:
    """``(synchronous, journal_mode, readonly)`` on ``n`` connections held at the same time
    (so the pool opens ``n`` of them), through write and read-only transactions."""
    seen: list[tuple[int, str, bool]] = []
    barrier = threading.Barrier(n)
    lock = threading.Lock()

    def one(readonly: bool) -> None:
        with storage.transaction(readonly=readonly) as tx:
            conn = tx._conn  # the connection the transaction runs on
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            with lock:
                seen.append((int(sync), str(mode).lower(), readonly))
            if readonly:
                barrier.wait(timeout=30)  # hold the connection while the others open theirs

    # One writer at a time on SQLite: the writer runs first, the readers hold theirs together.
    one(False)
    threads = [threading.Thread(target=one, args=(True,)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return seen


def test_the_services_sqlite_connections_are_synchronous_full(tmp_path: Path) -> None:
    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path))
    with TestClient(app) as client:
        assert client.post("/v1/challenge").status_code == 200
        storage: Storage = app.state.ctx.storage
        assert storage.dialect == "sqlite"
        seen = _settings_of_connections(storage, 4)
    assert len(seen) == 5
    assert {s for s, _, _ in seen} == {FULL}, seen
    assert {m for _, m, _ in seen} == {"wal"}, seen
