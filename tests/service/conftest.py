"""Fixtures for service tests: a domain, a service on SQLite or PostgreSQL, a simulated workload."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.pgutil import temporary_database

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.settings import Settings

GOOD = "ab" * 48
OTHER = "cd" * 48


@dataclass
class Env:
    domain: Domain
    client: TestClient
    platform: SimulatedPlatform
    platform_dir: Path
    db_url: str | None

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.domain.admin_token()}"}

    def install_policy(self, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = doc or default_policy(self.platform)
        env = sign_policy(load_policy(json.dumps(doc)), self.domain.policy_key)
        r = self.client.put("/v1/admin/policy", content=env, headers=self.admin)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def nonce(self) -> bytes:
        r = self.client.post("/v1/challenge")
        assert r.status_code == 200
        return bytes.fromhex(r.json()["nonce"])

    def workload(self, measurement: str = GOOD, **kw: Any) -> SimulatedPlatform:
        return SimulatedPlatform(self.platform_dir, measurement=measurement, **kw)

    def attest_body(
        self,
        platform: SimulatedPlatform | None = None,
        nonce: bytes | None = None,
        spki: bytes = b"",
    ) -> dict[str, Any]:
        platform = platform or self.platform
        nonce = nonce or self.nonce()
        ev = platform.evidence(report_data_for(nonce, spki, profile=platform.profile))
        return {
            "evidence": base64.b64encode(ev).decode(),
            "nonce": nonce.hex(),
            "format": "simulated",
        }


def default_policy(platform: SimulatedPlatform) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "test",
        "platforms": {
            "simulated": {
                "measurements": [GOOD],
                "platform_keys": [platform.key_id],
                "allow_debug": True,
            }
        },
    }


def spy_loop_transactions(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, record for each transaction ``ctx`` opens whether it runs on an event
    loop's thread (True: a database read or write blocking that loop)."""
    import asyncio

    on_loop: list[bool] = []
    real = ctx.storage.transaction

    def spy(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kwargs)

    monkeypatch.setattr(ctx.storage, "transaction", spy)
    return on_loop


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service_db(db_kind: str) -> Iterator[str | None]:
    if db_kind == "sqlite":
        yield None  # the embedded default in the data folder
    else:
        with temporary_database() as url:
            yield url


@pytest.fixture
def env(tmp_path: Path, service_db: str | None) -> Iterator[Env]:
    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    app = create_app(
        Settings(data_dir=domain.path, database_url=service_db, policy_cache_seconds=0)
    )
    with TestClient(app) as client:
        platform = SimulatedPlatform(tmp_path / "sim", measurement=GOOD)
        yield Env(domain, client, platform, tmp_path / "sim", service_db)
