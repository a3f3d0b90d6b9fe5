"""``Tx.spend_and_read_secret``: what a release reads, in one statement on PostgreSQL, answers
as the separate calls do: the nonce spent exactly once (also when threads race), the secret's
latest or numbered version, the revocation covering a certificate; and a rolled-back release
leaves its nonce unused."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from veritee.errors import NonceError
from veritee.service.storage import Storage, verify_audit_chain
from veritee.service.storage.tx import SecretReads

from .conftest import NONCE_KEY

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


def put(storage: Storage, name: str, data: bytes, at: int, policy: str = "{}") -> int:
    with storage.transaction() as tx:
        return tx.put_secret_version(
            name=name,
            policy=policy,
            kek_id="kek-1",
            wrapped_dek=b"dek:" + data,
            ciphertext=b"ct:" + data,
            now=T0 + timedelta(seconds=at),
        )


def reads(storage: Storage, nonce: bytes, **kw: object) -> SecretReads:
    with storage.transaction() as tx:
        return tx.spend_and_read_secret(nonce, now=T0 + timedelta(seconds=30), purpose="attest",
                                        **kw)  # type: ignore[arg-type]  # fmt: skip


def nonce(storage: Storage) -> bytes:
    return storage.issue_nonce(now=T0 + timedelta(seconds=29), ttl=TTL)


def test_reads_match_the_separate_calls(storage: Storage) -> None:
    put(storage, "k", b"1", 1, '{"a":1}')
    put(storage, "k", b"2", 2, '{"a":2}')
    with storage.transaction(readonly=True) as tx:
        want_latest, want_first = tx.secret_version("k"), tx.secret_version("k", 1)

    got = reads(storage, nonce(storage), name="k")
    assert got == SecretReads(want_latest, None, None)
    assert got.stored is not None and got.stored.ciphertext == b"ct:2"
    assert got.stored.created_at == T0 + timedelta(seconds=2)

    numbered = reads(storage, nonce(storage), name="k", version=1)
    assert numbered == SecretReads(want_first, want_latest, None)

    assert reads(storage, nonce(storage), name="absent") == SecretReads(None, None, None)
    assert reads(storage, nonce(storage), name="k", version=9) == SecretReads(None, None, None)
    assert reads(storage, b"", name="k").stored == want_latest  # no nonce (KBS resources)


def test_a_nonce_is_spent_once_and_a_rollback_leaves_it_unused(storage: Storage) -> None:
    put(storage, "k", b"1", 1)
    used = nonce(storage)
    reads(storage, used, name="k")
    with pytest.raises(NonceError) as exc:
        reads(storage, used, name="k")
    assert exc.value.code == "nonce_reused"
    with pytest.raises(NonceError) as exc:  # also for a secret that does not exist
        reads(storage, used, name="absent")
    assert exc.value.code == "nonce_reused"

    kept = nonce(storage)
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.spend_and_read_secret(kept, now=T0 + timedelta(seconds=30), purpose="attest", name="k")
        raise RuntimeError("the release failed after its reads")
    assert reads(storage, kept, name="k").stored is not None  # the nonce was not spent

    with pytest.raises(NonceError) as exc:  # expired: refused before any statement
        with storage.transaction() as tx:
            tx.spend_and_read_secret(nonce(storage), now=T0 + TTL + timedelta(seconds=60),
                                     purpose="attest", name="k")  # fmt: skip
    assert exc.value.code == "nonce_expired"
    with pytest.raises(NonceError) as exc:
        reads(storage, bytes(32), name="k", certificate=("ab", "cd"))
    assert exc.value.code == "nonce_unknown"


def test_revocation_covering_a_certificate(storage: Storage) -> None:
    put(storage, "k", b"1", 1)
    serial, meas = "1a2b", "cd" * 48
    assert reads(storage, nonce(storage), name="k", certificate=(serial, meas)).revoked is None
    with storage.transaction() as tx:
        tx.revoke("measurement", meas, reason="r", actor="admin", now=T0)
    got = reads(storage, nonce(storage), name="k", certificate=(serial.upper(), meas))
    assert got.stored is not None and got.revoked is not None
    assert (got.revoked.kind, got.revoked.value, got.revoked.revoked_at) == (
        "measurement",
        meas,
        T0,
    )
    with storage.transaction() as tx:
        tx.revoke("serial", serial, reason="r", actor="admin", now=T0 + timedelta(seconds=1))
    got = reads(storage, nonce(storage), name="absent", certificate=(serial, "ef"))
    assert got.stored is None and got.revoked is not None and got.revoked.kind == "serial"
    with storage.transaction(readonly=True) as tx:
        assert got.revoked == tx.revocation_of(serial, "ef")


def test_twenty_threads_race_to_release_with_one_nonce(db_url: str) -> None:
    storage = Storage(db_url, pool_size=20, nonce_key=NONCE_KEY)
    storage.migrate()
    try:
        put(storage, "k", b"1", 1)
        for _round in range(3):
            shared = nonce(storage)
            barrier = threading.Barrier(20)
            codes: list[str] = []
            lock = threading.Lock()

            def worker(n: bytes = shared, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    with storage.transaction() as tx:
                        tx.spend_and_read_secret(
                            n, now=T0 + timedelta(seconds=30), purpose="attest", name="k"
                        )
                        tx.append_audit(kind="secret.release", actor="workload", subject="k",
                                        decision="accept", details={}, now=T0)  # fmt: skip
                    code = "ok"
                except NonceError as exc:
                    code = exc.code
                with lock:
                    codes.append(code)

            threads = [threading.Thread(target=worker) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(codes) == ["nonce_reused"] * 19 + ["ok"]
        report = verify_audit_chain(storage)
        assert report.ok and report.count == 3
    finally:
        storage.close()
