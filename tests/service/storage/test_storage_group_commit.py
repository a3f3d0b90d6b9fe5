"""Group commit (SQLite): calls of ``Storage.submit`` share one transaction and one sync, and
each ``transaction()`` block inside a call still succeeds or fails alone."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from veritee.errors import NonceError, StorageError
from veritee.service.storage import Storage, default_sqlite_url, verify_audit_chain
from veritee.service.storage.storage import GROUP_COMMIT_MAX

from .conftest import NONCE_KEY

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Storage]:
    st = Storage(default_sqlite_url(tmp_path), nonce_key=NONCE_KEY)
    st.migrate()
    yield st
    st.close()


def _hold(storage: Storage) -> tuple[threading.Event, threading.Event]:
    """Occupy the group-commit thread until the returned ``release`` is set, so that the calls
    submitted meanwhile form one group. ``holding`` is set once it is occupied."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        assert release.wait(30)

    storage.submit(hold)
    assert holding.wait(30)
    return holding, release


def _spend_and_audit(storage: Storage, nonce: bytes, subject: str) -> object:
    with storage.transaction() as tx:
        tx.consume_nonce(nonce, now=T0)
        tx.append_audit(kind="attest", actor="workload", subject=subject, decision="accept",
                                details={"n": subject}, now=T0)  # fmt: skip
    # The group object itself, not its id(): the caller holds it, so a later group cannot be
    # given the same address and look like the same group.
    return storage._group.current() if storage._group is not None else None


def _subjects(storage: Storage) -> list[str]:
    with storage.transaction(readonly=True) as tx:
        return [e.subject for e in tx.audit_entries(after_seq=0, limit=100)]


def test_calls_waiting_together_share_a_transaction_and_each_block_fails_alone(
    sqlite: Storage,
) -> None:
    n1, n2 = (sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(2))

    def audit_then_fail() -> None:
        with sqlite.transaction() as tx:
            tx.append_audit(kind="attest", actor="workload", subject="undone", decision="accept",
                            details={}, now=T0)  # fmt: skip
            raise ValueError("the caller's own failure")

    def refused_then_audited() -> str:
        try:
            _spend_and_audit(sqlite, n1, "replay")
        except NonceError as e:  # as the service does: the refusal is audited on its own
            with sqlite.transaction() as tx:
                tx.append_audit(kind="attest.nonce_rejected", actor="workload", subject="refusal",
                                decision="reject", details={"reason": e.code}, now=T0)  # fmt: skip
            return e.code
        return "accepted"

    _, release = _hold(sqlite)
    futures = [
        sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "first")),
        sqlite.submit(refused_then_audited),
        sqlite.submit(audit_then_fail),
        sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "again")),
        sqlite.submit(lambda: _spend_and_audit(sqlite, n2, "second")),
    ]
    release.set()
    group = futures[0].result(30)
    assert group is not None
    assert futures[1].result(30) == "nonce_reused"
    with pytest.raises(ValueError, match="own failure"):
        futures[2].result(30)
    with pytest.raises(NonceError) as e:
        futures[3].result(30)
    assert e.value.code == "nonce_reused"
    assert futures[4].result(30) == group  # committed in the same group as the first
    assert _subjects(sqlite) == ["first", "refusal", "second"]
    assert verify_audit_chain(sqlite).ok
    # A call from inside a call runs in the caller's group, at once.
    assert sqlite.submit(lambda: sqlite.submit(lambda: 7).result(0)).result(30) == 7


def test_a_failed_group_commit_fails_every_call_and_keeps_none_of_their_writes(
    sqlite: Storage,
) -> None:
    nonce = sqlite.issue_nonce(now=T0, ttl=TTL)

    def poison() -> None:
        # A deferred foreign key checked only at the commit: the whole group's COMMIT fails.
        with sqlite.transaction() as tx:
            raw = tx._raw
            raw.execute("CREATE TEMP TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY)")
            raw.execute("CREATE TEMP TABLE IF NOT EXISTS c (pid INTEGER REFERENCES p(id) "
                        "DEFERRABLE INITIALLY DEFERRED)")  # fmt: skip
            raw.execute("INSERT INTO c VALUES (9)")

    _, release = _hold(sqlite)
    good = sqlite.submit(lambda: _spend_and_audit(sqlite, nonce, "lost"))
    bad = sqlite.submit(poison)
    release.set()
    for future in (good, bad):
        with pytest.raises(StorageError):
            future.result(30)
    assert _subjects(sqlite) == []
    # The nonce was not spent: it can be used now, alone.
    sqlite.submit(lambda: _spend_and_audit(sqlite, nonce, "kept")).result(30)
    assert _subjects(sqlite) == ["kept"]
    assert verify_audit_chain(sqlite).ok


def test_a_group_is_bounded_and_every_call_is_answered(sqlite: Storage) -> None:
    nonces = [sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(GROUP_COMMIT_MAX + 5)]
    _, release = _hold(sqlite)
    futures = [
        sqlite.submit(lambda n=n, i=i: _spend_and_audit(sqlite, n, str(i)))
        for i, n in enumerate(nonces)
    ]
    release.set()
    groups = [f.result(30) for f in futures]
    assert len(set(groups)) >= 2  # more calls than one group takes
    assert sorted(_subjects(sqlite), key=int) == [str(i) for i in range(len(nonces))]
    assert verify_audit_chain(sqlite).ok


def test_submit_after_close_is_refused(tmp_path: Path) -> None:
    st = Storage(default_sqlite_url(tmp_path), nonce_key=NONCE_KEY)
    st.migrate()
    assert st.submit(lambda: 1).result(30) == 1
    st.close()
    with pytest.raises(StorageError):
        st.submit(lambda: 1)


def test_a_group_waits_for_the_calls_of_requests_still_in_progress(
    sqlite: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veritee.service.storage import storage as module

    monkeypatch.setattr(module, "GROUP_COMMIT_WAIT", 60.0)  # only the second call ends the wait
    in_progress = [2]
    sqlite.set_busy_hint(lambda: in_progress[0])
    n1, n2 = (sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(2))
    first = sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "first"))
    threading.Event().wait(0.05)  # the other request is still verifying
    second = sqlite.submit(lambda: _spend_and_audit(sqlite, n2, "second"))
    assert first.result(30) == second.result(30)  # one group, one commit
    in_progress[0] = 0
    assert _subjects(sqlite) == ["first", "second"]


def test_calls_that_come_while_another_writer_holds_the_database_join_the_group(
    sqlite: Storage,
) -> None:
    """The group takes the writer locks first, then every call waiting by then: those that came
    while another writer (another worker process, a CLI command) held the database share the
    commit it waited for."""
    n1, n2, n3 = (sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(3))
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with sqlite.transaction():
            holding.set()
            assert release.wait(30)

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(30)
    first = sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "first"))
    threading.Event().wait(0.05)  # the group of the first call now waits for the locks
    later = [sqlite.submit(lambda n=n, s=s: _spend_and_audit(sqlite, n, s))
             for n, s in ((n2, "second"), (n3, "third"))]  # fmt: skip
    release.set()
    thread.join(30)
    assert first.result(30) == later[0].result(30) == later[1].result(30)  # one group
    assert _subjects(sqlite) == ["first", "second", "third"]
    assert verify_audit_chain(sqlite).ok


def test_run_from_an_event_loop_answers_each_call_of_a_group(sqlite: Storage) -> None:
    """``Storage.run`` (the service's way in): each caller gets its own result or error, once
    the group is committed; a caller that gave up before its call ran leaves it unrun."""
    import asyncio

    nonces = [sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(3)]

    async def main() -> list[Any]:
        _, release = _hold(sqlite)
        ok = asyncio.ensure_future(sqlite.run(lambda: _spend_and_audit(sqlite, nonces[0], "a")))
        again = asyncio.ensure_future(sqlite.run(lambda: _spend_and_audit(sqlite, nonces[0], "b")))
        gone = asyncio.ensure_future(sqlite.run(lambda: _spend_and_audit(sqlite, nonces[1], "c")))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        results = await asyncio.gather(ok, again, gone, return_exceptions=True)
        results.append(await sqlite.run(lambda: _spend_and_audit(sqlite, nonces[2], "d")))
        return results

    first, reused, cancelled, later = asyncio.run(main())
    assert first is not None and later is not None
    assert isinstance(reused, NonceError) and reused.code == "nonce_reused"
    assert isinstance(cancelled, asyncio.CancelledError)
    assert _subjects(sqlite) == ["a", "d"]  # the cancelled call never ran
    assert verify_audit_chain(sqlite).ok


def test_statements_run_through_sqlalchemy_join_the_groups_transaction(sqlite: Storage) -> None:
    """The group's transaction is begun on the driver connection of the connection the commit
    thread keeps: a statement run through SQLAlchemy (not a hot path) joins it, is rolled back
    with its own block when that fails, and is committed with the others."""
    n1, n2 = (sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(2))

    def fact_and_spend() -> object:
        with sqlite.transaction() as tx:
            tx.record_domain_fact("kept", "yes", now=T0)
        return _spend_and_audit(sqlite, n1, "first")

    def fact_then_fail() -> None:
        with sqlite.transaction() as tx:
            tx.record_domain_fact("undone", "no", now=T0)
            raise ValueError("the caller's own failure")

    _, release = _hold(sqlite)
    futures = [sqlite.submit(fact_and_spend), sqlite.submit(fact_then_fail),
               sqlite.submit(lambda: _spend_and_audit(sqlite, n2, "second"))]  # fmt: skip
    release.set()
    group = futures[0].result(30)
    with pytest.raises(ValueError, match="own failure"):
        futures[1].result(30)
    assert futures[2].result(30) == group
    with sqlite.transaction(readonly=True) as tx:
        assert (tx.domain_fact("kept"), tx.domain_fact("undone")) == ("yes", None)
    assert _subjects(sqlite) == ["first", "second"]
    # The next group runs on the same connection, in a transaction of its own.
    assert sqlite._group is not None
    held = sqlite._group._conn
    assert held is not None and not held.connection.driver_connection.in_transaction
    n3 = sqlite.issue_nonce(now=T0, ttl=TTL)
    sqlite.submit(lambda: _spend_and_audit(sqlite, n3, "third")).result(30)
    assert sqlite._group._conn is held
    assert _subjects(sqlite) == ["first", "second", "third"]
    assert verify_audit_chain(sqlite).ok


def test_after_a_failed_commit_the_next_group_starts_clean(sqlite: Storage) -> None:
    """A group whose COMMIT fails is rolled back on the kept connection (a failed COMMIT leaves
    SQLite's transaction open): the next group neither sees nor commits any of its writes."""
    nonce = sqlite.issue_nonce(now=T0, ttl=TTL)

    def poison() -> None:
        with sqlite.transaction() as tx:
            tx.record_domain_fact("lost", "yes", now=T0)
            raw = tx._raw
            raw.execute("CREATE TEMP TABLE IF NOT EXISTS p2 (id INTEGER PRIMARY KEY)")
            raw.execute("CREATE TEMP TABLE IF NOT EXISTS c2 (pid INTEGER REFERENCES p2(id) "
                        "DEFERRABLE INITIALLY DEFERRED)")  # fmt: skip
            raw.execute("INSERT INTO c2 VALUES (9)")

    with pytest.raises(StorageError):
        sqlite.submit(poison).result(30)
    assert sqlite._group is not None
    held = sqlite._group._conn
    assert held is None or not held.connection.driver_connection.in_transaction
    sqlite.submit(lambda: _spend_and_audit(sqlite, nonce, "kept")).result(30)
    with sqlite.transaction(readonly=True) as tx:
        assert tx.domain_fact("lost") is None
    assert _subjects(sqlite) == ["kept"]
    assert verify_audit_chain(sqlite).ok


@pytest.mark.parametrize("through_sqlalchemy", [False, True])
def test_a_groups_first_block_fails_alone_without_a_savepoint(
    sqlite: Storage, through_sqlalchemy: bool
) -> None:
    """The first block of a group runs without a savepoint: when it fails, the transaction is
    rolled back and begun again, so its writes (and only they) are undone, and the blocks after
    it, in the same call or in others, are committed."""
    n1, n2 = (sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(2))

    def first_fails_then_audits() -> str:
        try:
            with sqlite.transaction() as tx:
                if through_sqlalchemy:
                    tx.record_domain_fact("undone", "no", now=T0)
                tx.consume_nonce(n1, now=T0)
                tx.append_audit(kind="attest", actor="workload", subject="undone",
                                decision="accept", details={}, now=T0)  # fmt: skip
                raise ValueError("the caller's own failure")
        except ValueError:
            with sqlite.transaction() as tx:
                tx.append_audit(kind="attest.failed", actor="workload", subject="refusal",
                                decision="reject", details={}, now=T0)  # fmt: skip
        return "audited"

    _, release = _hold(sqlite)
    futures = [sqlite.submit(first_fails_then_audits),
               sqlite.submit(lambda: _spend_and_audit(sqlite, n2, "second"))]  # fmt: skip
    release.set()
    assert futures[0].result(30) == "audited"
    futures[1].result(30)
    assert _subjects(sqlite) == ["refusal", "second"]
    with sqlite.transaction(readonly=True) as tx:
        assert tx.domain_fact("undone") is None
    # The first block's nonce was not spent: it is still good once.
    sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "later")).result(30)
    with pytest.raises(NonceError):
        sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "replay")).result(30)
    assert _subjects(sqlite) == ["refusal", "second", "later"]
    assert verify_audit_chain(sqlite).ok


@pytest.mark.parametrize("position", [0, 1])
def test_a_database_error_between_a_blocks_statements_leaves_nothing_half_written(
    sqlite: Storage, position: int
) -> None:
    """A block that fails with a database error after its nonce was spent and before its audit
    entry was written (the group's first block, or a later one in its savepoint): its caller
    gets the StorageError, the nonce stays unspent and no audit entry is half written; the
    other calls of the group are committed, their nonces refused when replayed, and the chain
    holds."""
    n1, n2, n3 = (sqlite.issue_nonce(now=T0, ttl=TTL) for _ in range(3))

    def spend_then_fail() -> None:
        with sqlite.transaction() as tx:
            tx.consume_nonce(n1, now=T0)
            tx._raw.execute("INSERT INTO audit_log (seq) VALUES (NULL)")  # NOT NULL: refused

    calls = [lambda: _spend_and_audit(sqlite, n2, "second"),
             lambda: _spend_and_audit(sqlite, n3, "third")]  # fmt: skip
    calls.insert(position, spend_then_fail)
    _, release = _hold(sqlite)
    futures = [sqlite.submit(call) for call in calls]
    release.set()
    failed = futures.pop(position)
    with pytest.raises(StorageError) as info:
        failed.result(30)
    assert "INSERT" not in str(info.value)  # no statement text in the error
    assert futures[0].result(30) is futures[1].result(30)  # the others: one group, committed
    assert _subjects(sqlite) == ["second", "third"]
    assert verify_audit_chain(sqlite).ok
    for nonce in (n2, n3):  # spent by the committed calls: replays are refused
        with pytest.raises(NonceError) as replay:
            sqlite.submit(lambda n=nonce: _spend_and_audit(sqlite, n, "replay")).result(30)
        assert replay.value.code == "nonce_reused"
    sqlite.submit(lambda: _spend_and_audit(sqlite, n1, "first")).result(30)  # still unspent
    assert _subjects(sqlite) == ["second", "third", "first"]
    assert verify_audit_chain(sqlite).ok


def test_transaction_of_a_closed_storage_is_refused(tmp_path: Path) -> None:
    st = Storage(default_sqlite_url(tmp_path), nonce_key=NONCE_KEY)
    st.migrate()
    st.close()
    with pytest.raises(StorageError), st.transaction():
        pass


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_the_commit_thread_runs_as_batch_and_the_callers_keep_their_policy(
    sqlite: Storage,
) -> None:
    """The commit thread does not preempt the threads answering requests (``SCHED_BATCH``); the
    threads that submit calls keep the policy they had."""
    before = os.sched_getscheduler(0)
    seen: list[tuple[int, threading.Thread]] = []
    sqlite.submit(lambda: seen.append((os.sched_getscheduler(0), threading.current_thread())))
    sqlite.submit(lambda: None).result(timeout=30)
    ((policy, thread),) = seen
    assert policy == os.SCHED_BATCH and thread.name == "veritee-group-commit"
    assert thread.native_id is not None and thread is not threading.current_thread()
    assert os.sched_getscheduler(thread.native_id) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == before


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_policy_the_operator_chose_is_kept_by_the_commit_thread() -> None:
    """A thread already under another policy than the default (here idle, which needs no
    privilege; ``chrt`` and systemd can set real-time ones) is left under it."""
    from veritee.service.storage.storage import _batch_scheduling

    seen: list[int] = []

    def run() -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        _batch_scheduling()
        seen.append(os.sched_getscheduler(0))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [os.SCHED_IDLE]
