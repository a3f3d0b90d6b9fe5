"""Helpers shared by the storage tests (imported as tests.service.storage.storage_helpers)."""

from __future__ import annotations

from veritee.service.storage import Storage


def raw_execute(storage: Storage, sql: str) -> None:
    """Run SQL on a driver connection outside the Storage API (to play the attacker)."""
    with storage._engine.connect() as conn:
        conn.exec_driver_sql(sql)
        conn.commit()


def drop_audit_triggers(storage: Storage) -> None:
    """What an attacker with DDL rights could do: remove the append-only triggers."""
    if storage.dialect == "postgresql":
        raw_execute(storage, "DROP TRIGGER audit_log_no_change ON audit_log")
    else:
        raw_execute(storage, "DROP TRIGGER audit_log_no_update")
        raw_execute(storage, "DROP TRIGGER audit_log_no_delete")
