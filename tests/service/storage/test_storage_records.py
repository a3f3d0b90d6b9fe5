"""Policies (versioned, one active per kind), certificates, secrets (versions, soft delete)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from veritee.errors import StorageError, UsageError
from veritee.service.storage import Storage
from veritee.service.storage.models import SECRETS

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def put(storage: Storage, name: str, body: bytes, kind: str = "appraisal", at: int = 0) -> int:
    with storage.transaction() as tx:
        return tx.put_policy(
            name=name,
            document=body,
            digest="sha256:" + body.hex()[:16],
            actor="admin",
            now=T0 + timedelta(seconds=at),
            kind=kind,
        )


def test_policy_versions_and_active(storage: Storage) -> None:
    assert put(storage, "payments", b"v1", at=1) == 1
    assert put(storage, "payments", b"v2", at=2) == 2
    assert put(storage, "batch", b"b1", at=3) == 1
    assert put(storage, "payments", b"v3", kind="channel", at=4) == 1
    with storage.transaction(readonly=True) as tx:
        payments = tx.active_policy("payments")
        domain = tx.active_policy()
        channel = tx.active_policy(kind="channel")
        old = tx.policy_version("payments", 1)
        missing = tx.active_policy("nope")
        listed = tx.list_policies()
        appraisal = tx.list_policies("appraisal")
    assert payments is not None and payments.version == 2 and payments.document == b"v2"
    assert payments.active  # "batch", put later, is in force next to it: it replaced nothing
    assert domain is not None and (domain.name, domain.version, domain.active) == ("batch", 1, True)
    assert channel is not None and channel.document == b"v3" and channel.kind == "channel"
    assert old is not None and old.document == b"v1" and old.created_at == T0 + timedelta(seconds=1)
    assert missing is None
    assert [(p.kind, p.name, p.version) for p in listed] == [
        ("appraisal", "batch", 1),
        ("appraisal", "payments", 1),
        ("appraisal", "payments", 2),
        ("channel", "payments", 1),
    ]
    assert len(appraisal) == 3
    assert [(p.name, p.version) for p in appraisal if p.active] == [("batch", 1), ("payments", 2)]
    assert "v2" not in repr(payments)  # documents stay out of reprs and logs

    assert put(storage, "payments", b"v4", at=5) == 3
    with storage.transaction(readonly=True) as tx:
        domain = tx.active_policy()
        in_force = tx.policies_in_force()
    assert domain is not None and (domain.name, domain.version) == ("payments", 3)
    assert [(p.name, p.version) for p in in_force] == [("batch", 1), ("payments", 3)]


def test_retiring_a_policy_takes_only_that_name_out_of_force(storage: Storage) -> None:
    put(storage, "payments", b"v1", at=1)
    put(storage, "batch", b"b1", at=2)
    with storage.transaction() as tx:
        retired = tx.retire_policy("batch")
        assert tx.retire_policy("batch") is None and tx.retire_policy("nope") is None
    assert retired is not None and (retired.name, retired.version) == ("batch", 1)
    with storage.transaction(readonly=True) as tx:
        assert [p.name for p in tx.policies_in_force()] == ["payments"]
        kept = tx.active_policy("batch")  # its versions stay stored
        assert kept is not None and not kept.active and kept.document == b"b1"
    assert put(storage, "batch", b"b2", at=3) == 2  # installed again: in force again
    with storage.transaction(readonly=True) as tx:
        assert [(p.name, p.version) for p in tx.policies_in_force()] == [
            ("batch", 2),
            ("payments", 1),
        ]


def test_no_policy_yet(storage: Storage) -> None:
    with storage.transaction(readonly=True) as tx:
        assert tx.active_policy() is None
        assert tx.list_policies() == []


def test_policy_arguments_checked(storage: Storage) -> None:
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.put_policy(name="", document=b"x", digest="d", actor="a", now=T0)
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.put_policy(name="n", document=b"", digest="d", actor="a", now=T0)


def test_certificates(storage: Storage) -> None:
    big = (1 << 159) + 12345
    with storage.transaction() as tx:
        tx.record_certificate(
            serial=big,
            subject_key_sha256="aa" * 32,
            measurement="bb" * 48,
            platform="simulated",
            not_before=T0,
            not_after=T0 + timedelta(days=1),
            pem="-----BEGIN CERTIFICATE-----",
        )
    with storage.transaction(readonly=True) as tx:
        cert = tx.certificate(big)
        assert tx.certificate(7) is None
    assert cert is not None and cert.serial == big and cert.not_after == T0 + timedelta(days=1)
    with pytest.raises(StorageError) as info, storage.transaction() as tx:
        tx.record_certificate(
            serial=big,
            subject_key_sha256="cc" * 32,
            measurement="x",
            platform="simulated",
            not_before=T0,
            not_after=T0,
            pem="p",
        )
    assert info.value.code == "storage_conflict"
    assert "INSERT" not in str(info.value) and "cc" * 32 not in str(info.value)
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.record_certificate(
            serial=1 << 160,
            subject_key_sha256="a",
            measurement="m",
            platform="p",
            not_before=T0,
            not_after=T0,
            pem="p",
        )


def put_secret(storage: Storage, name: str, data: bytes, at: int) -> int:
    with storage.transaction() as tx:
        return tx.put_secret_version(
            name=name,
            policy='{"measurements":["ab"]}',
            kek_id="kek-1",
            wrapped_dek=b"dek:" + data,
            ciphertext=b"ct:" + data,
            now=T0 + timedelta(seconds=at),
        )


def test_secret_versions_and_soft_delete(storage: Storage) -> None:
    assert put_secret(storage, "db-password", b"1", 1) == 1
    assert put_secret(storage, "db-password", b"2", 2) == 2
    assert put_secret(storage, "api-key", b"a", 3) == 1
    with storage.transaction(readonly=True) as tx:
        latest = tx.secret_version("db-password")
        first = tx.secret_version("db-password", 1)
        assert tx.secret_version("db-password", 9) is None
        assert tx.secret_version("nope") is None
        listed = tx.list_secrets()
    assert latest is not None and (latest.version, latest.ciphertext) == (2, b"ct:2")
    assert latest.wrapped_dek == b"dek:2" and latest.kek_id == "kek-1"
    assert latest.created_at == T0 + timedelta(seconds=2)  # also through the SQLite hot path
    assert "ct:2" not in repr(latest) and "dek:2" not in repr(latest)
    assert first is not None and first.ciphertext == b"ct:1"
    assert [(s.name, s.latest_version, s.versions) for s in listed] == [
        ("api-key", 1, 1),
        ("db-password", 2, 2),
    ]
    db = listed[1]
    assert db.created_at == T0 + timedelta(seconds=1) and db.updated_at == T0 + timedelta(seconds=2)

    with storage.transaction() as tx:
        assert tx.delete_secret("db-password", now=T0 + timedelta(seconds=10)) == 2
        assert tx.delete_secret("db-password", now=T0 + timedelta(seconds=11)) == 0
        assert tx.delete_secret("never-existed", now=T0) == 0
    with storage.transaction(readonly=True) as tx:
        assert tx.secret_version("db-password") is None
        assert tx.secret_version("db-password", 1) is None
        assert [s.name for s in tx.list_secrets()] == ["api-key"]
        # Soft delete: the rows are kept, marked with the time of deletion.
        deleted = tx._conn.execute(
            select(SECRETS.c.version, SECRETS.c.deleted_at).where(SECRETS.c.name == "db-password")
        ).all()
    assert sorted(deleted) == [(1, T0 + timedelta(seconds=10)), (2, T0 + timedelta(seconds=10))]

    # A new version after a delete continues the numbering; old versions stay deleted.
    assert put_secret(storage, "db-password", b"3", 20) == 3
    with storage.transaction(readonly=True) as tx:
        again = tx.secret_version("db-password")
        assert tx.secret_version("db-password", 2) is None
    assert again is not None and again.version == 3


def test_secret_arguments_checked(storage: Storage) -> None:
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.put_secret_version(
            name="s", policy="{}", kek_id="k", wrapped_dek=b"", ciphertext=b"c", now=T0
        )
    with pytest.raises(UsageError), storage.transaction() as tx:
        tx.put_secret_version(
            name="s", policy="", kek_id="k", wrapped_dek=b"d", ciphertext=b"c", now=T0
        )


def test_collateral_marks_are_only_ever_raised(storage: Storage) -> None:
    """Issue 11 item 3: a mark is recorded once per (kind, subject) and raised only by a higher
    value; a lower or equal one changes nothing (the older folder put back lowers no mark)."""
    from veritee.collateral.marks import Mark

    with storage.transaction() as tx:
        assert (
            tx.raise_collateral_marks(
                [
                    Mark("tcb_info", "TDX:AA", 17, "a.json"),
                    Mark("pck_crl", "CN=ca", 1000, "a.json"),
                ],
                now=T0,
            )
            != []
        )
    with storage.transaction() as tx:
        raised = tx.raise_collateral_marks(
            [Mark("tcb_info", "TDX:AA", 18, "b.json"), Mark("pck_crl", "CN=ca", 999, "b.json")],
            now=T0,
        )
        assert [(m.kind, m.value) for m in raised] == [("tcb_info", 18)]
    with storage.transaction() as tx:
        assert (
            tx.raise_collateral_marks(
                [
                    Mark("tcb_info", "TDX:AA", 17, "a.json"),
                    Mark("tcb_info", "TDX:AA", 18, "c.json"),
                ],
                now=T0,
            )
            == []
        )
    with storage.transaction(readonly=True) as tx:
        marks = tx.collateral_marks()
    held = {k: (m.value, m.source) for k, m in marks.by_key.items()}
    assert held == {("tcb_info", "TDX:AA"): (18, "b.json"), ("pck_crl", "CN=ca"): (1000, "a.json")}
