"""POST /v1/attest answered below the router (FastAttest): the same answers, refusals, audit
records, single-use nonces and metrics as the route's, and only while the route takes nothing
but its body and the request."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from tests.service.conftest import GOOD, default_policy

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service import app as service_app
from veritee.service import routes_attest
from veritee.service.settings import Settings
from veritee.tokens import kbs_audience


@pytest.fixture
def pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, TestClient, Domain, SimulatedPlatform]]:
    """Two apps on one domain and database: one with the fast path, one without."""
    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    settings = Settings(data_dir=domain.path, policy_cache_seconds=0)
    fast = service_app.create_app(settings)
    assert any(m.cls is service_app.FastAttest for m in fast.user_middleware)
    with monkeypatch.context() as m:
        m.setattr(service_app, "fast_attest_route", lambda app: None)
        routed = service_app.create_app(settings)
    assert not any(m.cls is service_app.FastAttest for m in routed.user_middleware)
    platform = SimulatedPlatform(tmp_path / "sim", measurement=GOOD)
    OTHER[:] = [SimulatedPlatform(tmp_path / "sim", measurement="cd" * 48)]
    with TestClient(fast) as a, TestClient(routed) as b:
        doc = sign_policy(load_policy(json.dumps(default_policy(platform))), domain.policy_key)
        r = a.put(
            "/v1/admin/policy",
            content=doc,
            headers={"Authorization": f"Bearer {domain.admin_token()}"},
        )
        assert r.status_code == 200, r.text
        yield a, b, domain, platform


def _body(client: TestClient, platform: SimulatedPlatform, **extra: Any) -> dict[str, Any]:
    nonce = bytes.fromhex(client.post("/v1/challenge").json()["nonce"])
    ev = platform.evidence(report_data_for(nonce, b"", profile=platform.profile))
    return {"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
            "format": "simulated", **extra}  # fmt: skip


OTHER: list[SimulatedPlatform] = []  # the workload of another measurement (set by ``pair``)

Case = Callable[[TestClient, SimulatedPlatform], tuple[bytes, str]]

CASES: dict[str, Case] = {
    "not json": lambda c, p: (b"{not json", "application/json"),
    "an array": lambda c, p: (b"[1, 2]", "application/json"),
    "null": lambda c, p: (b"null", "application/json"),
    "empty": lambda c, p: (b"", "application/json"),
    "too deep": lambda c, p: (b"[" * 100 + b"]" * 100, "application/json"),
    "long integer": lambda c, p: (b'{"evidence": ' + b"9" * 60 + b"}", "application/json"),
    "nan": lambda c, p: (b'{"evidence": NaN, "nonce": "ab"}', "application/json"),
    "missing nonce": lambda c, p: (b'{"evidence": "AAAA"}', "application/json"),
    "wrong type": lambda c, p: (b'{"evidence": 5, "nonce": "abab"}', "application/json"),
    "unknown field": lambda c, p: (json.dumps({**_body(c, p), "bogus": 1}).encode(), "application/json"),
    "not a JSON content type": lambda c, p: (json.dumps(_body(c, p)).encode(), "text/plain"),
    "+json content type": lambda c, p: (json.dumps(_body(c, p)).encode(), "application/attest+json"),
    "nonce not hex": lambda c, p: (json.dumps({**_body(c, p), "nonce": "zz"}).encode(), "application/json"),
    "evidence not base64": lambda c, p: (json.dumps({**_body(c, p), "evidence": "@@@"}).encode(), "application/json"),
    "unknown nonce": lambda c, p: (json.dumps({**_body(c, p), "nonce": "ab" * 32}).encode(), "application/json"),
    "garbage evidence": lambda c, p: (json.dumps({**_body(c, p), "evidence": "AAAA"}).encode(), "application/json"),
    "no such policy": lambda c, p: (json.dumps(_body(c, p, policy="nope")).encode(), "application/json"),
    "reserved audience": lambda c, p: (
        json.dumps(_body(c, p, audience=kbs_audience("veritee"))).encode(), "application/json"),
    "bad audience": lambda c, p: (json.dumps(_body(c, p, audience="a b")).encode(), "application/json"),
    "wrong measurement": lambda c, p: (json.dumps(_body(c, OTHER[0])).encode(), "application/json"),
}  # fmt: skip


def _answer(client: TestClient, case: Case, platform: SimulatedPlatform) -> tuple[int, Any]:
    content, content_type = case(client, platform)
    r = client.post("/v1/attest", content=content, headers={"content-type": content_type})
    try:
        body: Any = r.json()
    except ValueError:
        body = r.text
    if isinstance(body, dict):  # what differs from one request to the next
        body.pop("token", None)
        body.pop("claims", None)
    return r.status_code, body


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_fast_path_answers_as_the_route_does(
    pair: tuple[TestClient, TestClient, Domain, SimulatedPlatform], name: str
) -> None:
    fast, routed, _, platform = pair
    assert _answer(fast, CASES[name], platform) == _answer(routed, CASES[name], platform)


def test_an_attestation_by_the_fast_path_is_the_route_s(
    pair: tuple[TestClient, TestClient, Domain, SimulatedPlatform],
) -> None:
    fast, routed, domain, platform = pair
    body = _body(fast, platform)
    a = fast.post("/v1/attest", json=body)
    assert a.status_code == 200 and a.json()["accepted"] and a.json()["token"]
    assert a.headers["content-type"] == "application/json"
    # the nonce is spent, on either path
    for client in (fast, routed):
        again = client.post("/v1/attest", json=body)
        assert again.status_code == 409 and again.json()["code"] == "nonce_reused"
    b = routed.post("/v1/attest", json=_body(routed, platform))
    assert b.status_code == 200
    assert a.json().keys() == b.json().keys()
    differ = {"report_data"}  # binds each one's nonce
    assert {k: v for k, v in a.json()["claims"].items() if k not in differ} == {
        k: v for k, v in b.json()["claims"].items() if k not in differ
    }
    # each decision and refusal is in the audit chain, which still verifies
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    entries = fast.get("/v1/admin/audit", params={"limit": 100}, headers=admin).json()["entries"]
    kinds = [e["kind"] for e in entries]
    assert kinds.count("attest") == 2 and kinds.count("attest.nonce_rejected") == 2
    assert fast.get("/v1/admin/audit/verify", headers=admin).json()["ok"] is True
    metrics = fast.get("/metrics").text
    assert 'veritee_http_requests_total{route="/v1/attest",status="200"} 1.0' in metrics
    assert 'veritee_http_requests_total{route="/v1/attest",status="409"} 1.0' in metrics
    assert 'veritee_decisions_total{kind="attest",outcome="accept"} 1.0' in metrics


def test_a_tampered_report_is_refused_by_the_fast_path(
    pair: tuple[TestClient, TestClient, Domain, SimulatedPlatform],
) -> None:
    fast, _, _, platform = pair
    assert fast.post("/v1/attest", json=_body(fast, platform)).status_code == 200  # warm
    body = _body(fast, platform)
    ev = bytearray(base64.b64decode(body["evidence"]))
    ev[10] ^= 1
    r = fast.post("/v1/attest", json={**body, "evidence": base64.b64encode(bytes(ev)).decode()})
    assert r.status_code == 200 and r.json()["accepted"] is False  # an EAR of the refusal
    assert "signature_invalid" in {x["code"] for x in r.json()["reasons"]}


def test_the_fast_path_is_off_when_the_route_could_differ() -> None:
    assert service_app.fast_attest_route(FastAPI()) is None  # the attest router not included
    prefixed = FastAPI()
    prefixed.include_router(routes_attest.router, prefix="/api")
    assert service_app.fast_attest_route(prefixed) is None
    guarded = FastAPI()
    guarded.include_router(routes_attest.router, dependencies=[Depends(lambda: None)])
    assert service_app.fast_attest_route(guarded) is None
    plain = FastAPI()
    plain.include_router(routes_attest.router)
    route = service_app.fast_attest_route(plain)
    assert route is not None and route.path == "/v1/attest"
