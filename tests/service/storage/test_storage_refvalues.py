"""The reference-value store's tables (SQLite and PostgreSQL): provenance, expiry, withdrawal."""

from __future__ import annotations

import datetime as dt

from veritee.service.storage import Storage
from veritee.service.storage.tx import REFVALUE_GENERATION

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _source(sha: str, *, set_name: str = "frontend", expires: dt.datetime | None = None,
            not_before: dt.datetime | None = None) -> dict[str, object]:  # fmt: skip
    return {
        "set_name": set_name, "file_name": f"{sha}.cbor", "sha256": sha * 64, "document": b"\xd9\x01\xf5",
        "kind": "signed-corim", "corim_id": "id-" + sha, "profile": None, "scheme": None,
        "signer_name": "ACME", "signer_key_sha256": "ab" * 32, "not_before": not_before, "expires_at": expires,
    }  # fmt: skip


def test_add_list_expire_withdraw(storage: Storage) -> None:
    rows = [("11" * 48, "sha-384", '"a"', "{}"), ("22" * 48, "sha-384", '"b"', "{}")]
    with storage.transaction() as tx:
        first = tx.add_refvalue_source(
            _source("a", expires=T0 + dt.timedelta(days=1)), rows, actor="admin", now=T0
        )
        assert first is not None
        assert (
            tx.add_refvalue_source(_source("a"), rows, actor="admin", now=T0) is None
        )  # same file, same set
        other = tx.add_refvalue_source(
            _source("a", set_name="other"), rows[:1], actor="admin", now=T0
        )
        later = tx.add_refvalue_source(
            _source("c", not_before=T0 + dt.timedelta(hours=2)), [("33" * 48, "sha-384", '"c"', "{}")],
            actor="admin", now=T0,
        )  # fmt: skip
        assert other is not None and later is not None
        assert tx.domain_fact(REFVALUE_GENERATION) == "3"
    with storage.transaction(readonly=True) as tx:
        assert sorted(v for v, *_ in tx.refvalue_set("frontend", now=T0)) == ["11" * 48, "22" * 48]
        assert [v for v, *_ in tx.refvalue_set("other", now=T0)] == ["11" * 48]
        assert tx.refvalue_set_changes_after("frontend", now=T0) == T0 + dt.timedelta(hours=2)
        at3 = T0 + dt.timedelta(hours=3)
        assert sorted(v for v, *_ in tx.refvalue_set("frontend", now=at3)) == [
            "11" * 48,
            "22" * 48,
            "33" * 48,
        ]
        expired = T0 + dt.timedelta(days=2)
        assert [v for v, *_ in tx.refvalue_set("frontend", now=expired)] == ["33" * 48]
        src, entries = tx.refvalue_source(first) or (None, [])
        assert src is not None and src.signer_name == "ACME" and src.entry_count == 2
        assert src.status(T0) == "active" and src.status(expired) == "expired"
        assert [e.value for e in entries] == ["11" * 48, "22" * 48]
        assert [s.id for s in tx.refvalue_sources("frontend")] == [first, later]
        assert tx.refvalue_source(10_000) is None
    with storage.transaction() as tx:
        assert tx.withdraw_refvalue_source(first, reason="superseded", now=T0) is True
        assert tx.withdraw_refvalue_source(first, reason="again", now=T0) is False
        assert tx.domain_fact(REFVALUE_GENERATION) == "4"
    with storage.transaction(readonly=True) as tx:
        assert tx.refvalue_set("frontend", now=T0) == []
        src, _ = tx.refvalue_source(first) or (None, [])
        assert (
            src is not None
            and src.status(T0) == "withdrawn"
            and src.withdrawn_reason == "superseded"
        )
