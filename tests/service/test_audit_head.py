"""GET /v1/admin/audit/head: the signed head (anchor) of the audit log, admin only."""

from __future__ import annotations

from tests.service.conftest import Env

from veritee.anchors import check_log_against, read_anchor


def test_audit_head_is_signed_and_admin_only(env: Env) -> None:
    env.install_policy()
    env.client.post("/v1/attest", json=env.attest_body())
    assert env.client.get("/v1/admin/audit/head").status_code == 401
    r = env.client.get("/v1/admin/audit/head", headers=env.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    anchor = read_anchor(body["anchor"], env.domain.token_key.public_key())
    assert anchor.seq == body["seq"] >= 2  # the policy change and the decision
    assert anchor.entry_hash.hex() == body["entry_hash"]
    entries = env.client.get("/v1/admin/audit?limit=1000", headers=env.admin).json()["entries"]
    assert entries[-1]["seq"] == anchor.seq and entries[-1]["entry_hash"] == body["entry_hash"]
    check_log_against(env.client.app.state.ctx.storage, [anchor])  # type: ignore[attr-defined]
