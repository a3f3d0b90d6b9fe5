"""Nonces: single use (also across threads and processes), expiry, forgery, purge."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from veritee.errors import NonceError, UsageError
from veritee.service.storage import Storage
from veritee.service.storage.models import NONCES

from .conftest import NONCE_KEY

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


def issue(storage: Storage, now: datetime = T0, purpose: str = "attest") -> bytes:
    with storage.transaction() as tx:
        return tx.issue_nonce(now=now, ttl=TTL, purpose=purpose)


def consume_code(storage: Storage, nonce: bytes, now: datetime, purpose: str = "attest") -> str:
    try:
        with storage.transaction() as tx:
            tx.consume_nonce(nonce, now=now, purpose=purpose)
    except NonceError as exc:
        return exc.code
    return "ok"


def test_nonce_is_32_bytes_nothing_is_stored_until_used_and_then_only_its_hash(
    storage: Storage,
) -> None:
    a, b = issue(storage), storage.issue_nonce(now=T0, ttl=TTL)
    assert len(a) == 32 and len(b) == 32 and a != b
    assert stored_hashes(storage) == set()
    assert consume_code(storage, a, T0) == "ok"
    assert consume_code(storage, b, T0) == "ok"
    assert stored_hashes(storage) == {hashlib.sha256(a).digest(), hashlib.sha256(b).digest()}


def stored_hashes(storage: Storage) -> set[bytes]:
    with storage.transaction(readonly=True) as tx:
        return {bytes(r[0]) for r in tx._conn.execute(select(NONCES.c.nonce_sha256))}


def test_forged_and_foreign_nonces_are_unknown(storage: Storage, db_url: str) -> None:
    nonce = issue(storage)
    for i in (0, 8, 14, 16, 31):  # random part, issue time, lifetime, tag
        forged = bytearray(nonce)
        forged[i] ^= 1
        assert consume_code(storage, bytes(forged), T0) == "nonce_unknown"
    # A later expiry cannot be bought by editing the lifetime field.
    longer = nonce[:14] + (0xFFFF).to_bytes(2, "big") + nonce[16:]
    assert consume_code(storage, longer, T0 + TTL) == "nonce_unknown"
    other = Storage(db_url, nonce_key=bytes(range(100, 132)))
    try:
        assert consume_code(other, nonce, T0) == "nonce_unknown"
        assert consume_code(other, issue(other), T0) == "ok"
    finally:
        other.close()
    assert consume_code(storage, nonce, T0) == "ok"


def test_same_key_means_same_nonces_across_storage_objects(storage: Storage, db_url: str) -> None:
    """What replicas of one domain rely on: a nonce issued by one is used up for all."""
    twin = Storage(db_url, nonce_key=NONCE_KEY)
    try:
        nonce = issue(storage)
        assert consume_code(twin, nonce, T0) == "ok"
        assert consume_code(storage, nonce, T0) == "nonce_reused"
    finally:
        twin.close()


def test_nonce_single_use(storage: Storage) -> None:
    nonce = issue(storage)
    assert consume_code(storage, nonce, T0 + timedelta(seconds=10)) == "ok"
    assert consume_code(storage, nonce, T0 + timedelta(seconds=11)) == "nonce_reused"


def test_nonce_expiry_boundary(storage: Storage) -> None:
    nonce = issue(storage)
    assert consume_code(storage, nonce, T0 + TTL) == "nonce_expired"
    assert consume_code(storage, nonce, T0 + TTL + timedelta(days=1)) == "nonce_expired"
    # Failed attempts do not consume it: still expired, never "reused".
    other = issue(storage)
    assert consume_code(storage, other, T0 + TTL - timedelta(microseconds=1)) == "ok"


def test_unknown_nonce_wrong_purpose_and_wrong_length(storage: Storage) -> None:
    nonce = issue(storage, purpose="attest")
    assert consume_code(storage, bytes(32), T0) == "nonce_unknown"
    assert consume_code(storage, nonce, T0, purpose="release") == "nonce_unknown"
    assert consume_code(storage, nonce[:31], T0) == "nonce_unknown"
    assert consume_code(storage, nonce + b"\x00", T0) == "nonce_unknown"
    assert consume_code(storage, nonce, T0) == "ok"


def test_purge_removes_only_ended_nonces(storage: Storage) -> None:
    old = issue(storage, now=T0)
    young = issue(storage, now=T0 + timedelta(minutes=4))
    assert consume_code(storage, old, T0) == "ok"
    assert consume_code(storage, young, T0 + timedelta(minutes=4)) == "ok"
    young = issue(storage, now=T0 + timedelta(minutes=4))
    # (the record of a used nonce stays until its lifetime ends; then the nonce is expired anyway)
    with storage.transaction() as tx:
        assert tx.purge_nonces(now=T0 + TTL) == 1
    assert consume_code(storage, old, T0 + TTL) == "nonce_expired"
    assert consume_code(storage, young, T0 + TTL) == "ok"
    with storage.transaction() as tx:
        assert tx.purge_nonces(now=T0 + TTL) == 0


def test_time_must_be_aware_and_ttl_bounded(storage: Storage) -> None:
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.issue_nonce(now=datetime(2025, 1, 1), ttl=TTL)
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.issue_nonce(now=T0, ttl=timedelta(0))
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.issue_nonce(now=T0, ttl=timedelta(days=1))
    with pytest.raises(UsageError):
        storage.issue_nonce(now=T0, ttl=timedelta(milliseconds=999))
    with pytest.raises(UsageError):
        storage.issue_nonce(now=T0, ttl=TTL, purpose="x" * 33)
    with pytest.raises(UsageError):
        Storage("sqlite:///unused.db", nonce_key=b"short")


def test_time_zones_are_normalized(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    nonce = issue(storage, now=T0.astimezone(plus_two))
    assert consume_code(storage, nonce, (T0 + TTL).astimezone(plus_two)) == "nonce_expired"
    nonce = issue(storage, now=T0.astimezone(plus_two))
    assert consume_code(storage, nonce, T0 + TTL - timedelta(seconds=1)) == "ok"


def test_twenty_threads_race_for_one_nonce(db_url: str) -> None:
    storage = Storage(db_url, pool_size=20, nonce_key=NONCE_KEY)
    storage.migrate()
    try:
        for _round in range(3):
            nonce = issue(storage)
            barrier = threading.Barrier(20)
            codes: list[str] = []
            lock = threading.Lock()

            def worker(nonce: bytes = nonce, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                code = consume_code(storage, nonce, T0 + timedelta(seconds=1))
                with lock:
                    codes.append(code)

            threads = [threading.Thread(target=worker) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(codes) == ["nonce_reused"] * 19 + ["ok"]
    finally:
        storage.close()


RACER = r"""
import sys
from datetime import datetime, timedelta, UTC
from veritee.errors import NonceError
from veritee.service.storage import Storage

storage = Storage(sys.argv[1], nonce_key=bytes.fromhex(sys.argv[4]))
nonce = bytes.fromhex(sys.argv[2])
now = datetime.fromisoformat(sys.argv[3])
with storage.transaction() as tx:  # warm the connection before the start signal
    tx.purge_nonces(now=now - timedelta(days=365))
print("ready", flush=True)
sys.stdin.readline()
try:
    with storage.transaction() as tx:
        tx.consume_nonce(nonce, now=now)
    print("ok", flush=True)
except NonceError as exc:
    print(exc.code, flush=True)
storage.close()
"""


def test_processes_race_for_one_nonce(storage: Storage, db_url: str) -> None:
    nonce = issue(storage)
    when = (T0 + timedelta(seconds=2)).isoformat()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, db_url, nonce.hex(), when, NONCE_KEY.hex()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            results.append(out.strip())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sorted(results) == ["nonce_reused"] * 5 + ["ok"]


def test_purge_in_batches(storage: Storage) -> None:
    for _ in range(5):
        assert consume_code(storage, issue(storage, now=T0), T0) == "ok"
    with storage.transaction() as tx:
        assert tx.purge_nonces(now=T0 + TTL, limit=2) == 2
    with storage.transaction() as tx:
        assert tx.purge_nonces(now=T0 + TTL, limit=10) == 3
    assert stored_hashes(storage) == set()
