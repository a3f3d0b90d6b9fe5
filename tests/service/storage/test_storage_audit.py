"""Audit log: hash chain, append-only triggers, tamper detection, serialized appends."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.service.storage.storage_helpers import drop_audit_triggers, raw_execute

from veritee.errors import StorageError, UsageError
from veritee.service.storage import Storage, verify_audit_chain
from veritee.service.storage.audit import GENESIS_HASH, MAX_DETAILS_BYTES

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def append(storage: Storage, n: int, start: int = 0) -> None:
    with storage.transaction() as tx:
        for i in range(start, start + n):
            tx.append_audit(
                kind="attest",
                actor=f"workload-{i}",
                subject="ab" * 32,
                decision="accept" if i % 2 == 0 else "reject",
                details={"evidence_sha256": hashlib.sha256(str(i).encode()).hexdigest(), "i": i},
                now=T0 + timedelta(seconds=i),
            )


def test_chain_is_recomputable_independently(storage: Storage) -> None:
    with storage.transaction() as tx:
        first = tx.append_audit(
            kind="policy.put",
            actor="admin",
            subject="payments-prod",
            decision=None,
            details={"z": 1, "a": "é"},
            now=T0,
        )
        second = tx.append_audit(
            kind="attest",
            actor="w",
            subject="s",
            decision="accept",
            details={},
            now=T0 + timedelta(microseconds=7),
        )
    assert (first.seq, second.seq) == (1, 2)
    assert first.at == "2025-03-01T12:00:00.000000Z"
    assert second.at == "2025-03-01T12:00:00.000007Z"
    # The documented construction, written out here without the library's helpers.
    body = (
        '{"actor":"admin","at":"2025-03-01T12:00:00.000000Z","decision":null,'
        '"details":{"a":"\\u00e9","z":1},"kind":"policy.put","seq":1,"subject":"payments-prod"}'
    )
    assert first.prev_hash == bytes(32)
    assert first.entry_hash == hashlib.sha256(bytes(32) + body.encode()).digest()
    assert second.prev_hash == first.entry_hash
    report = verify_audit_chain(storage)
    assert report.ok and report.count == 2 and report.first_broken is None
    assert report.head_seq == 2 and report.head_hash == second.entry_hash
    with storage.transaction(readonly=True) as tx:
        assert tx.audit_head() == (2, second.entry_hash)
        read = tx.audit_entries()
    assert read == [first, second]
    assert read[0].as_dict()["prev_hash"] == "00" * 32


def test_empty_log_verifies(storage: Storage) -> None:
    report = verify_audit_chain(storage)
    assert report.ok and report.count == 0 and report.head_hash == GENESIS_HASH
    with storage.transaction(readonly=True) as tx:
        assert tx.audit_head() == (0, GENESIS_HASH)


def test_entries_paging(storage: Storage) -> None:
    append(storage, 25)
    with storage.transaction(readonly=True) as tx:
        page1 = tx.audit_entries(limit=10)
        page2 = tx.audit_entries(after_seq=page1[-1].seq, limit=10)
        page3 = tx.audit_entries(after_seq=page2[-1].seq, limit=10)
        with pytest.raises(UsageError):
            tx.audit_entries(limit=0)
    assert [e.seq for e in page1 + page2 + page3] == list(range(1, 26))
    assert page3[-1].details["i"] == 24


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"details": {"key": b"raw bytes"}}, "not JSON-serializable"),
        ({"details": {"x": float("nan")}}, "not JSON-serializable"),
        ({"details": {"evidence": "A" * MAX_DETAILS_BYTES}}, "hashes"),
        ({"decision": "maybe"}, "decision"),
        ({"kind": ""}, "kind"),
        ({"details": ["not", "an", "object"]}, "JSON object"),
    ],
)
def test_bad_entries_are_refused(storage: Storage, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "kind": "attest",
        "actor": "a",
        "subject": "s",
        "decision": None,
        "details": {},
        "now": T0,
    }
    args.update(kwargs)
    with pytest.raises(UsageError, match=match), storage.transaction() as tx:
        tx.append_audit(**args)
    assert verify_audit_chain(storage).count == 0


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET decision = 'accept' WHERE seq = 2",
        "UPDATE audit_log SET details = '{}'",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_log",
    ],
)
def test_triggers_make_the_log_append_only(storage: Storage, sql: str) -> None:
    append(storage, 3)
    before = verify_audit_chain(storage)
    with pytest.raises(StorageError) as info:
        raw_execute_translated(storage, sql)
    assert "append-only" in str(info.value)
    assert "UPDATE" not in str(info.value) and "DELETE" not in str(info.value)
    assert verify_audit_chain(storage) == before


def test_truncate_refused_on_postgresql(storage: Storage) -> None:
    if storage.dialect != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    append(storage, 2)
    with pytest.raises(StorageError, match="append-only"):
        raw_execute_translated(storage, "TRUNCATE audit_log")
    assert verify_audit_chain(storage).count == 2


def raw_execute_translated(storage: Storage, sql: str) -> None:
    with storage.transaction() as tx:
        tx._conn.exec_driver_sql(sql)


def test_tampered_content_is_named(storage: Storage) -> None:
    append(storage, 6)
    drop_audit_triggers(storage)
    raw_execute(storage, "UPDATE audit_log SET decision = 'accept' WHERE seq = 4")
    report = verify_audit_chain(storage)
    assert not report.ok and report.first_broken == 4 and report.count == 3
    assert "hash mismatch" in report.message


def test_tampered_details_and_time_are_named(storage: Storage) -> None:
    append(storage, 5)
    drop_audit_triggers(storage)
    raw_execute(storage, "UPDATE audit_log SET at = '2020-01-01T00:00:00.000000Z' WHERE seq = 5")
    report = verify_audit_chain(storage)
    assert (report.ok, report.first_broken) == (False, 5)
    raw_execute(storage, """UPDATE audit_log SET details = '{"i":1' WHERE seq = 2""")
    report = verify_audit_chain(storage)
    assert (report.ok, report.first_broken) == (False, 2)
    assert "not JSON" in report.message
    with pytest.raises(StorageError, match="entry 2"), storage.transaction() as tx:
        tx.audit_entries()


def test_rewritten_entry_with_recomputed_hash_breaks_next_link(storage: Storage) -> None:
    append(storage, 5)
    with storage.transaction(readonly=True) as tx:
        entry = tx.audit_entries(after_seq=2, limit=1)[0]
    forged_details = dict(entry.details, i=999)
    from veritee.service.storage import entry_hash

    forged = entry_hash(
        entry.prev_hash,
        seq=3,
        at=entry.at,
        kind=entry.kind,
        actor=entry.actor,
        subject=entry.subject,
        decision=entry.decision,
        details=forged_details,
    )
    drop_audit_triggers(storage)
    raw_execute(
        storage,
        f"UPDATE audit_log SET details = '{json.dumps(forged_details)}', "
        f"entry_hash = {hex_literal(storage, forged)} WHERE seq = 3",
    )
    report = verify_audit_chain(storage)
    assert (report.ok, report.first_broken) == (False, 4)
    assert "prev link mismatch" in report.message


def hex_literal(storage: Storage, data: bytes) -> str:
    if storage.dialect == "postgresql":
        return f"'\\x{data.hex()}'::bytea"
    return f"X'{data.hex()}'"


@pytest.mark.parametrize(("deleted", "named"), [(3, 3), (1, 1), (7, 7)])
def test_deleted_entry_is_named_as_gap(storage: Storage, deleted: int, named: int) -> None:
    append(storage, 8)
    drop_audit_triggers(storage)
    raw_execute(storage, f"DELETE FROM audit_log WHERE seq = {deleted}")
    report = verify_audit_chain(storage)
    assert not report.ok and report.first_broken == named
    assert "gap" in report.message and f"entry {named} is missing" in report.message


def test_long_chain_streams_in_batches(storage: Storage) -> None:
    append(storage, 1100)
    report = verify_audit_chain(storage)
    assert report.ok and report.count == 1100


def test_threads_append_without_gaps(db_url: str) -> None:
    storage = Storage(db_url, pool_size=8)
    storage.migrate()
    try:

        def work(k: int) -> None:
            for i in range(25):
                append(storage, 1, start=k * 100 + i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        report = verify_audit_chain(storage)
        assert report.ok and report.count == 200, report.message
    finally:
        storage.close()


APPENDER = r"""
import sys
from datetime import datetime, UTC
from veritee.service.storage import Storage

storage = Storage(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(40):
    with storage.transaction() as tx:
        tx.append_audit(kind="attest", actor=sys.argv[2], subject=str(i), decision="accept",
                        details={"i": i}, now=datetime.now(UTC))
storage.close()
print("done", flush=True)
"""


def test_processes_append_without_gaps(storage: Storage, db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, db_url, f"proc-{k}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out.strip() == "done", err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    report = verify_audit_chain(storage)
    assert report.ok and report.count == 120, report.message
    with storage.transaction(readonly=True) as tx:
        actors = {e.actor for e in tx.audit_entries(limit=1000)}
    assert actors == {"proc-0", "proc-1", "proc-2"}


def test_appended_entries_are_the_dataclass_field_for_field(tmp_path: Path) -> None:
    """``append_entry`` builds its AuditEntry without the dataclass's ``__init__``: the same
    object (equal, same hash, frozen) as ``AuditEntry(...)`` with those fields."""
    import dataclasses

    from veritee.service.storage import default_sqlite_url
    from veritee.service.storage.audit import AuditEntry

    st = Storage(default_sqlite_url(tmp_path))
    st.migrate()
    try:
        with st.transaction() as tx:
            entry = tx.append_audit(kind="attest", actor="workload", subject="m", decision="accept",
                                    details={"b": [1], "a": "é"}, now=datetime.now(UTC))  # fmt: skip
    finally:
        st.close()
    plain = AuditEntry(*(getattr(entry, f.name) for f in dataclasses.fields(AuditEntry)))
    assert type(entry) is AuditEntry and entry == plain and hash(entry) == hash(plain)
    assert entry.__dict__ == plain.__dict__ and entry.details == {"a": "é", "b": [1]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.seq = 2  # type: ignore[misc]
