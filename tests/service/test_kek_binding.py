"""The database records the domain's KEK (issue 12.4): a service with another KEK, or with none
where the database has one, refuses to start; a database from before the record is bound to the
KEK that wrapped its secrets."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import delete

from veritee.domain import Domain
from veritee.errors import UsageError
from veritee.keybroker.kek import KEK_ENV, KEK_FILE, AesGcmKek, FileKek
from veritee.keybroker.vault import seal
from veritee.service.app import create_app
from veritee.service.settings import Settings
from veritee.service.storage import Storage
from veritee.service.storage.models import DOMAIN_FACTS


@pytest.fixture
def domain_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEK_ENV, raising=False)
    import datetime as dt

    Domain.create(tmp_path / "d", name="k", now=dt.datetime.now(dt.UTC))
    return tmp_path / "d"


def test_the_first_start_records_the_kek_and_a_missing_one_is_not_remade(domain_dir: Path) -> None:
    create_app(Settings(data_dir=domain_dir))
    kek_id = FileKek.in_data_dir(domain_dir).kek_id
    (domain_dir / KEK_FILE).unlink()
    with pytest.raises(UsageError) as info:
        create_app(Settings(data_dir=domain_dir))
    assert info.value.code == "kek_missing" and kek_id in info.value.message
    assert not (domain_dir / KEK_FILE).exists()
    with pytest.raises(UsageError) as info:
        create_app(Settings(data_dir=domain_dir), kek=AesGcmKek(secrets.token_bytes(32)))
    assert info.value.code == "kek_mismatch" and kek_id in info.value.message


def test_a_database_from_before_the_record_is_bound_to_its_secrets_kek(domain_dir: Path) -> None:
    import datetime as dt

    kek = AesGcmKek(secrets.token_bytes(32))
    create_app(Settings(data_dir=domain_dir), kek=kek)
    store = Storage(Domain.open(domain_dir).database_url)
    try:
        with store.transaction() as tx:
            sealed = seal(kek, "s", 1, b"value")
            tx.put_secret_version(name="s", policy="{}", kek_id=sealed.kek_id,
                                  wrapped_dek=sealed.wrapped_dek, ciphertext=sealed.value_blob(),
                                  now=dt.datetime.now(dt.UTC))  # fmt: skip
            tx._conn.execute(delete(DOMAIN_FACTS))  # as a database migrated from 0005
    finally:
        store.close()
    with pytest.raises(UsageError) as info:
        create_app(Settings(data_dir=domain_dir))  # makes no file KEK: the secrets have one
    assert info.value.code == "kek_missing" and kek.kek_id in info.value.message
    with pytest.raises(UsageError) as info:
        create_app(Settings(data_dir=domain_dir), kek=AesGcmKek(secrets.token_bytes(32)))
    assert info.value.code == "kek_mismatch"
    create_app(Settings(data_dir=domain_dir), kek=kek)  # the right one records itself
    store = Storage(Domain.open(domain_dir).database_url)
    try:
        with store.transaction(readonly=True) as tx:
            assert tx.domain_fact("kek_id") == kek.kek_id
    finally:
        store.close()
