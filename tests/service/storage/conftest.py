"""Fixtures for the storage tests: ``db_url`` over SQLite (a temp file) and PostgreSQL.

PostgreSQL: one fresh database ``veritee_test_<hex>`` per test session on 127.0.0.1:5432 (made
and dropped by :func:`tests.pgutil.temporary_database`); each test gets its own schema in it,
selected through ``search_path``. The PostgreSQL cases skip, saying so, if the server is absent.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.pgutil import temporary_database

from veritee.service.storage import Storage, default_sqlite_url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    import psycopg

    schema = "t_" + secrets.token_hex(6)
    plain = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_database}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return default_sqlite_url(tmp_path)
    return str(request.getfixturevalue("pg_url"))


# The nonce key of the ``storage`` fixture (other processes of a test need it too).
NONCE_KEY = bytes(range(32))


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    st = Storage(db_url, nonce_key=NONCE_KEY)
    st.migrate()
    try:
        yield st
    finally:
        st.close()
