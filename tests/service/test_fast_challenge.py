"""POST /v1/challenge answered below the router (FastChallenge): the same answer, metrics and
fall-backs as the route's, and only while the route takes nothing but the request."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from tests.service.conftest import Env

from veritee.domain import Domain
from veritee.service import app as service_app
from veritee.service import routes_attest
from veritee.service.settings import Settings


def _answers(app: FastAPI) -> tuple[int, set[str], dict[str, object], str, int]:
    with TestClient(app) as client:
        r = client.post(
            "/v1/challenge",
            content=b'{"ignored": true}',
            headers={"content-type": "application/json"},
        )
        wrong = client.get("/v1/challenge").status_code
        metrics = client.get("/metrics").text
    return r.status_code, {k.lower() for k in r.headers}, r.json(), metrics, wrong


def test_the_fast_path_answers_as_the_route_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    fast = service_app.create_app(Settings(data_dir=domain.path))
    assert any(m.cls is service_app.FastChallenge for m in fast.user_middleware)
    monkeypatch.setattr(service_app, "fast_challenge_route", lambda app: None)
    routed = service_app.create_app(Settings(data_dir=domain.path))
    assert not any(m.cls is service_app.FastChallenge for m in routed.user_middleware)
    a, b = _answers(fast), _answers(routed)
    assert a[0] == b[0] == 200
    assert a[1] == b[1]  # the same headers (content-type, content-length)
    assert a[2].keys() == b[2].keys() == {"nonce", "expires_at"}
    assert len(bytes.fromhex(str(a[2]["nonce"]))) == 32
    line = 'veritee_http_requests_total{route="/v1/challenge",status="200"} 1.0'
    assert line in a[3] and line in b[3]  # counted under the route, as before
    assert a[4] == b[4] == 405  # another method still goes to the router


def test_a_nonce_from_the_fast_path_attests(env: Env) -> None:
    env.install_policy()
    r = env.client.post("/v1/attest", json=env.attest_body())  # the challenge came by the fast path
    assert r.status_code == 200 and r.json()["accepted"]


def test_the_fast_path_is_off_when_the_route_could_differ() -> None:
    assert service_app.fast_challenge_route(FastAPI()) is None  # the attest router not included
    prefixed = FastAPI()
    prefixed.include_router(routes_attest.router, prefix="/api")
    assert service_app.fast_challenge_route(prefixed) is None
    guarded = FastAPI()
    guarded.include_router(routes_attest.router, dependencies=[Depends(lambda: None)])
    assert service_app.fast_challenge_route(guarded) is None
    plain = FastAPI()
    plain.include_router(routes_attest.router)
    assert service_app.fast_challenge_route(plain) is not None
