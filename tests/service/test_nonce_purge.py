"""The service purges the records of used nonces once their lifetime has ended."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from veritee.domain import Domain
from veritee.service import app as app_module
from veritee.service.app import create_app
from veritee.service.settings import Settings
from veritee.service.storage.models import NONCES


def _count(ctx: object) -> int:
    with ctx.storage.transaction(readonly=True) as tx:  # type: ignore[attr-defined]
        return int(tx._conn.execute(select(func.count()).select_from(NONCES)).scalar_one())


def test_used_nonces_are_purged_after_their_lifetime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "NONCE_PURGE_SECONDS", 0.05)
    domain = Domain.create(tmp_path / "d", name="t", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path))
    ctx = app.state.ctx
    with TestClient(app):
        now = ctx.now()
        for ttl in (dt.timedelta(seconds=1), dt.timedelta(minutes=30)):
            nonce = ctx.storage.issue_nonce(now=now, ttl=ttl)
            with ctx.storage.transaction() as tx:
                tx.consume_nonce(nonce, now=now)
        assert _count(ctx) == 2
        deadline = time.monotonic() + 10
        while _count(ctx) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _count(ctx) == 1  # the short-lived one went once its second had passed


def test_a_large_purge_runs_in_short_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "NONCE_PURGE_BATCH", 7)
    domain = Domain.create(tmp_path / "d", name="t", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path))
    ctx = app.state.ctx
    past = ctx.now() - dt.timedelta(hours=1)
    for _ in range(30):
        nonce = ctx.storage.issue_nonce(now=past, ttl=dt.timedelta(seconds=5))
        with ctx.storage.transaction() as tx:
            tx.consume_nonce(nonce, now=past)
    fresh = ctx.storage.issue_nonce(now=ctx.now(), ttl=dt.timedelta(minutes=5))
    with ctx.storage.transaction() as tx:
        tx.consume_nonce(fresh, now=ctx.now())
    assert app_module._purge(ctx) == 30
    assert _count(ctx) == 1
    with ctx.storage.transaction() as tx:
        assert tx.purge_nonces(now=ctx.now(), limit=5) == 0
    ctx.storage.close()
