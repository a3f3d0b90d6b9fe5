"""Throw-away PostgreSQL databases on the local server (127.0.0.1:5432, trust auth, user postgres)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as e:  # any failure means "not reachable here"
        return f"PostgreSQL at 127.0.0.1:5432 not reachable ({type(e).__name__}); postgres tests skipped"


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create a fresh database, yield its SQLAlchemy URL, drop it afterwards."""
    why = postgres_available()
    if why:
        pytest.skip(why)
    import psycopg

    name = "veritee_test_" + secrets.token_hex(6)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
