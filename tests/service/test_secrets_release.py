"""Key broker over HTTP, on SQLite and PostgreSQL: store, release, deny, audit, faults."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from sqlalchemy import update
from tests.fakes.secrets import SECRET_VALUE, put_secret, release_body, release_policy
from tests.service.conftest import GOOD, OTHER, Env, default_policy

from veritee.keybroker.release import open_envelope
from veritee.service.storage.models import SECRETS


def _audit(env: Env) -> list[dict[str, Any]]:
    r = env.client.get("/v1/admin/audit?limit=500", headers=env.admin)
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def _no_secret_in(env: Env, text: str) -> None:
    for needle in (SECRET_VALUE.decode(), base64.b64encode(SECRET_VALUE).decode(), "correct-horse"):
        assert needle not in text


def test_admin_lifecycle_and_auth(env: Env) -> None:
    assert (
        env.client.put("/v1/admin/secrets/x", json={"value": "", "policy": {}}).status_code == 401
    )
    bad = {"Authorization": "Bearer nope"}
    assert env.client.get("/v1/admin/secrets", headers=bad).status_code == 401
    r = put_secret(env)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    r = env.client.post(
        "/v1/admin/secrets/db/password/rotate",
        json={"value": base64.b64encode(b"v2").decode()},
        headers=env.admin,
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    info = env.client.get("/v1/admin/secrets/db/password", headers=env.admin).json()
    assert info["version"] == 2 and info["policy"]["anyOf"]
    listing = env.client.get("/v1/admin/secrets", headers=env.admin).json()["secrets"]
    assert [(s["name"], s["latest_version"], s["versions"]) for s in listing] == [
        ("db/password", 2, 2)
    ]
    r = env.client.delete("/v1/admin/secrets/db/password", headers=env.admin)
    assert r.json()["deleted_versions"] == 2
    assert env.client.get("/v1/admin/secrets/db/password", headers=env.admin).status_code == 404
    # numbering continues after a delete, and the new version still opens
    assert put_secret(env).json()["version"] == 3
    kinds = [e["kind"] for e in _audit(env)]
    assert kinds.count("secret.put") == 2 and "secret.rotate" in kinds and "secret.delete" in kinds
    _no_secret_in(env, json.dumps(_audit(env)))


@pytest.mark.parametrize(
    "policy",
    [
        {"anyOf": []},
        {"allOf": [{"claim": "measurement", "equal": GOOD}]},
        {"anyOf": [{"claim": "x", "in": []}]},
    ],
)
def test_bad_policies_refused(env: Env, policy: dict[str, Any]) -> None:
    r = put_secret(env, policy=policy)
    assert r.status_code == 400 and r.json()["code"] == "release_policy_invalid"
    assert "release policy $" in r.json()["detail"]


def test_release_hpke_and_jwe(env: Env) -> None:
    env.install_policy()
    assert put_secret(env).status_code == 200
    for key in (x25519.X25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())):
        body = release_body(env, key)
        r = env.client.post("/v1/secrets/db/password/release", json=body)
        assert r.status_code == 200, r.text
        env_json = r.json()
        assert env_json["envelope"] == (
            "hpke" if isinstance(key, x25519.X25519PrivateKey) else "jwe"
        )
        _no_secret_in(env, r.text)
        got = open_envelope(
            env_json,
            key,
            name="db/password",
            nonce=bytes.fromhex(body["nonce"]),
            ca_certificate=env.domain.ca_certificate,
            at=dt.datetime.now(dt.UTC),
        )
        assert got == SECRET_VALUE
    releases = [e for e in _audit(env) if e["kind"] == "secret.release"]
    assert len(releases) == 2 and releases[0]["decision"] == "accept"
    assert releases[0]["details"]["measurement"] == GOOD
    _no_secret_in(env, json.dumps(_audit(env)))


def test_replayed_nonce_is_refused_and_audited(env: Env) -> None:
    env.install_policy()
    put_secret(env)
    key = x25519.X25519PrivateKey.generate()
    body = release_body(env, key)
    assert env.client.post("/v1/secrets/db/password/release", json=body).status_code == 200
    r = env.client.post("/v1/secrets/db/password/release", json=body)
    assert r.status_code == 409 and r.json()["code"] == "nonce_reused"
    deny = [e for e in _audit(env) if e["kind"] == "secret.deny"]
    assert deny[-1]["details"]["release_reasons"][0]["code"] == "nonce_reused"


def test_evidence_bound_to_another_key_is_denied(env: Env) -> None:
    env.install_policy()
    put_secret(env)
    mine, theirs = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    body = release_body(env, mine, bind_key=theirs)
    r = env.client.post("/v1/secrets/db/password/release", json=body)
    assert r.status_code == 403 and r.json()["code"] == "release_denied"
    codes = [x["code"] for x in r.json()["reasons"]]
    assert "binding_mismatch" in codes
    _no_secret_in(env, r.text)


def test_policy_mismatch_is_denied_with_reasons(env: Env) -> None:
    doc = default_policy(env.platform)
    doc["platforms"]["simulated"]["measurements"] = [GOOD, OTHER]
    env.install_policy(doc)
    put_secret(env)
    other = env.workload(OTHER)
    r = env.client.post(
        "/v1/secrets/db/password/release",
        json=release_body(env, x25519.X25519PrivateKey.generate(), platform=other),
    )
    assert r.status_code == 403
    reasons = r.json()["reasons"]
    assert reasons[0]["code"] == "release_claim_mismatch" and "measurement" in reasons[0]["message"]
    deny = [e for e in _audit(env) if e["kind"] == "secret.deny"][-1]
    assert deny["decision"] == "reject" and deny["details"]["release_reasons"] == reasons


def test_unappraised_evidence_is_denied(env: Env) -> None:
    put_secret(env)  # no appraisal policy installed: the domain refuses everything
    r = env.client.post(
        "/v1/secrets/db/password/release",
        json=release_body(env, x25519.X25519PrivateKey.generate()),
    )
    assert r.status_code == 403
    codes = [x["code"] for x in r.json()["reasons"]]
    assert codes[:2] == ["appraisal_not_accepted", "no_policy"]


def test_unknown_secret(env: Env) -> None:
    env.install_policy()
    r = env.client.post(
        "/v1/secrets/nope/release", json=release_body(env, x25519.X25519PrivateKey.generate())
    )
    assert r.status_code == 404 and r.json()["code"] == "secret_unknown"
    assert _audit(env)[-1]["kind"] == "secret.deny"


def test_tampered_at_rest_is_detected_not_decrypted(env: Env) -> None:
    env.install_policy()
    put_secret(env)
    storage = env.client.app.state.ctx.storage
    with storage.transaction() as tx:
        stored = tx.secret_version("db/password")
        assert stored is not None
        flipped = bytearray(stored.ciphertext)
        flipped[-1] ^= 1
        tx._conn.execute(
            update(SECRETS).where(SECRETS.c.name == "db/password").values(ciphertext=bytes(flipped))
        )
    r = env.client.post(
        "/v1/secrets/db/password/release",
        json=release_body(env, x25519.X25519PrivateKey.generate()),
    )
    assert r.status_code == 403 and r.json()["code"] == "secret_tampered"
    last = _audit(env)[-1]
    assert last["kind"] == "secret.deny"
    assert last["details"]["release_reasons"][-1]["code"] == "secret_tampered"


def test_fault_mid_release_leaves_no_release_and_loses_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service dies between deciding and writing the audit record: nothing counts as
    released, the nonce is not burnt, the secret is intact, and a retry succeeds."""
    from veritee.errors import StorageError
    from veritee.service.storage.tx import Tx

    env.install_policy()
    put_secret(env)
    real = Tx.append_audit

    def dying(self: Tx, **kw: Any) -> Any:
        if kw.get("kind") == "secret.release":
            raise StorageError("connection lost (injected)")
        return real(self, **kw)

    monkeypatch.setattr(Tx, "append_audit", dying)
    key = x25519.X25519PrivateKey.generate()
    body = release_body(env, key)
    r = env.client.post("/v1/secrets/db/password/release", json=body)
    assert r.status_code == 503
    _no_secret_in(env, r.text)
    monkeypatch.setattr(Tx, "append_audit", real)
    assert not [e for e in _audit(env) if e["kind"] == "secret.release"]
    r = env.client.post("/v1/secrets/db/password/release", json=body)  # same nonce: not burnt
    assert r.status_code == 200, r.text
    nonce = bytes.fromhex(body["nonce"])
    assert (
        open_envelope(
            r.json(),
            key,
            name="db/password",
            nonce=nonce,
            ca_certificate=env.domain.ca_certificate,
            at=dt.datetime.now(dt.UTC),
        )
        == SECRET_VALUE
    )
    assert len([e for e in _audit(env) if e["kind"] == "secret.release"]) == 1


def test_dry_run(env: Env) -> None:
    env.install_policy()
    put_secret(env)
    ev = env.platform.evidence(b"\0" * 64)
    r = env.client.post(
        "/v1/admin/secrets/db/password/dry-run",
        json={"evidence": base64.b64encode(ev).decode(), "format": "simulated"},
        headers=env.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["allowed"] is True
    other = env.workload(OTHER).evidence(b"\0" * 64)
    r = env.client.post(
        "/v1/admin/secrets/db/password/dry-run",
        json={"evidence": base64.b64encode(other).decode()},
        headers=env.admin,
    )
    assert r.json()["allowed"] is False
    assert {x["code"] for x in r.json()["reasons"]} >= {"appraisal_not_accepted"}
    r = env.client.post(
        "/v1/admin/secrets/db/password/dry-run",
        json={"claims": {"platform": "simulated", "measurement": GOOD}},
        headers=env.admin,
    )
    assert r.json()["allowed"] is True
    # dry runs release nothing
    assert not [e for e in _audit(env) if e["kind"] == "secret.release"]


def test_rotation_to_a_stricter_policy_binds_every_older_version(env: Env) -> None:
    """Issue 12.3: after rotating to a stricter release policy, asking for version 1 released
    the old value to a workload that only the old policy admitted. A release of any version
    must satisfy the newest policy, unless the operator said otherwise at rotation."""
    doc = default_policy(env.platform)
    doc["platforms"]["simulated"]["measurements"] = [GOOD, OTHER]
    env.install_policy(doc)
    either = {"anyOf": [{"claim": "measurement", "equals": m} for m in (GOOD, OTHER)]}
    assert put_secret(env, policy=either).json()["version"] == 1
    other = env.workload(OTHER)

    def release(version: int) -> Any:
        body = release_body(env, x25519.X25519PrivateKey.generate(), platform=other)
        return env.client.post("/v1/secrets/db/password/release", json=body | {"version": version})

    assert release(1).status_code == 200
    rotate = {"value": base64.b64encode(b"v2").decode(), "policy": release_policy(GOOD)}
    r = env.client.post("/v1/admin/secrets/db/password/rotate", json=rotate, headers=env.admin)
    assert r.status_code == 200
    denied = release(1)
    assert denied.status_code == 403 and denied.json()["code"] == "release_denied", denied.text
    assert r.json()["keep_old_policies"] is False
    r = denied
    assert "release_claim_mismatch" in [x["code"] for x in r.json()["reasons"]]
    _no_secret_in(env, r.text)
    assert release(2).status_code == 403
    # The operator says explicitly that older versions keep their own policies.
    rotate = {"value": base64.b64encode(b"v3").decode(), "policy": release_policy(GOOD),
              "keep_old_policies": True}  # fmt: skip
    r = env.client.post("/v1/admin/secrets/db/password/rotate", json=rotate, headers=env.admin)
    assert r.status_code == 200 and r.json()["keep_old_policies"] is True
    assert release(1).status_code == 200
    assert release(3).status_code == 403
    rotation = [e for e in _audit(env) if e["kind"] == "secret.rotate"]
    assert [e["details"]["keep_old_policies"] for e in rotation] == [False, True]
    # keep_old_policies is a choice made at rotation, not at put
    r = env.client.put(
        "/v1/admin/secrets/other",
        headers=env.admin,
        json={"value": "eA==", "policy": either, "keep_old_policies": True},
    )
    assert r.status_code == 400
