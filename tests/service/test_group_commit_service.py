"""Attestations answered concurrently (one event loop, the group commit of SQLite): every
nonce is spent once, every decision is audited once, the chain stays intact."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from tests.service.conftest import Env

from veritee.service.storage import verify_audit_chain


def test_concurrent_attests_and_replays_each_decided_once(env: Env) -> None:
    env.install_policy()
    bodies = [env.attest_body() for _ in range(6)]
    bodies += [bodies[0], bodies[1], bodies[1]]  # replays, sent at the same time as the originals
    app = env.client.app

    async def all_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return list(await asyncio.gather(*(client.post("/v1/attest", json=b) for b in bodies)))

    answers = env.client.portal.call(all_at_once)  # type: ignore[union-attr]
    codes = Counter(r.status_code for r in answers)
    assert codes == {200: 6, 409: 3}, codes
    refused = [r.json() for r in answers if r.status_code != 200]
    assert {p["code"] for p in refused} == {"nonce_reused"}
    assert all(r.json()["accepted"] and r.json()["token"] for r in answers if r.status_code == 200)
    storage = app.state.ctx.storage  # type: ignore[attr-defined]
    with storage.transaction(readonly=True) as tx:
        kinds = Counter(e.kind for e in tx.audit_entries(after_seq=0, limit=1000))
    assert kinds["attest"] == 6 and kinds["attest.nonce_rejected"] == 3, kinds
    assert verify_audit_chain(storage).ok
