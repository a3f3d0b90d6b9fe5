"""Policies that refer to reference-value sets (issue 17): `measurements: {refvalues: NAME}`.

End to end through the service (SQLite and PostgreSQL): a CoRIM that carries the workload's
measurement is registered into a set, a policy refers to the set, the attestation is accepted
and its decision names the set and the CoRIM; a withdrawn or expired CoRIM, an unknown set and a
measurement not in the set are refused; literal lists keep working beside sets."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import cbor2
import pytest
from tests.service.conftest import GOOD, OTHER, Env, spy_loop_transactions

from veritee.appraisal import load_policy
from veritee.appraisal.evaluate import appraise_admitted
from veritee.errors import PolicyError
from veritee.refvalues.sets import RefValueSet


def _corim(*measurements: str, validity_end: int | None = None) -> bytes:
    env = {0: {1: "ACME", 2: "payments-frontend"}}
    meas = [{0: f"image-{i}", 1: {2: [[7, bytes.fromhex(m)]]}} for i, m in enumerate(measurements)]
    comid = {1: {0: "payments-frontend-build-42"}, 4: {0: [[env, meas]]}}
    corim: dict[int, Any] = {0: "corim-42", 1: [cbor2.CBORTag(506, cbor2.dumps(comid))]}
    if validity_end is not None:
        corim[4] = {1: cbor2.CBORTag(1, validity_end)}
    return bytes(cbor2.dumps(cbor2.CBORTag(501, corim)))


def _register(env: Env, blob: bytes, set_name: str = "payments-frontend") -> dict[str, Any]:
    r = env.client.post("/v1/admin/refvalues", headers=env.admin, json={
        "set": set_name, "corim": base64.b64encode(blob).decode(), "file_name": "build-42.corim",
        "allow_unsigned": True})  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


def _policy(env: Env, pins: Any) -> dict[str, Any]:
    return {"version": 1, "name": "frontend", "platforms": {"simulated": {
        "measurements": pins, "platform_keys": [env.platform.key_id], "allow_debug": True}}}  # fmt: skip


def _attest(env: Env, measurement: str = GOOD) -> dict[str, Any]:
    r = env.client.post("/v1/attest", json=env.attest_body(env.workload(measurement)))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_policy_refers_to_a_set(env: Env) -> None:
    source = _register(env, _corim(GOOD))
    env.install_policy(_policy(env, {"refvalues": "payments-frontend"}))
    out = _attest(env)
    assert out["accepted"] is True, out["reasons"]
    note = out["notes"][0]
    assert note["code"] == "refvalue_matched"
    assert (
        "set 'payments-frontend'" in note["message"]
        and "#1 build-42.corim, CoRIM id corim-42" in note["message"]
    )
    dry = env.client.post("/v1/admin/policy/dry-run", headers=env.admin, json={
        "policy": json.dumps(_policy(env, {"refvalues": "payments-frontend"})),
        "evidence": env.attest_body(env.workload(GOOD))["evidence"]})  # fmt: skip
    assert dry.status_code == 200 and dry.json()["accepted"] is True
    assert dry.json()["notes"][0]["code"] == "refvalue_matched"
    refused = _attest(env, OTHER)
    assert refused["accepted"] is False
    assert [r["code"] for r in refused["reasons"]] == ["measurement_not_allowed"]
    assert "reference-value set 'payments-frontend'" in refused["reasons"][0]["message"]
    # withdrawn: the values stop counting at once (the set is then empty: unknown)
    r = env.client.post(
        f"/v1/admin/refvalues/{source['id']}/withdraw", headers=env.admin, json={"reason": "cve"}
    )
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    out = _attest(env)
    assert out["accepted"] is False and [r["code"] for r in out["reasons"]] == [
        "refvalues_unavailable"
    ]


def test_unknown_set_expired_corim_and_literal_lists(env: Env) -> None:
    env.install_policy(_policy(env, {"refvalues": "nobody-registered-this"}))
    out = _attest(env)
    assert [r["code"] for r in out["reasons"]] == ["refvalues_unavailable"]
    # an expired CoRIM is refused when registered
    past = int(dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp())
    r = env.client.post("/v1/admin/refvalues", headers=env.admin, json={
        "set": "old", "corim": base64.b64encode(_corim(GOOD, validity_end=past)).decode(),
        "allow_unsigned": True})  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "corim_expired", r.text
    # literal lists are unchanged beside sets
    env.install_policy(_policy(env, [GOOD]))
    assert _attest(env)["accepted"] is True


def test_attest_reads_the_database_off_the_event_loop(env: Env, monkeypatch: Any) -> None:
    """/v1/attest appraises on the event loop; the policies in force, the collateral
    generation and the reference values it needs (read again at every request here,
    ``policy_cache_seconds=0``) are read in a database thread, never on the loop."""
    _register(env, _corim(GOOD))
    env.install_policy(_policy(env, {"refvalues": "payments-frontend"}))
    on_loop = spy_loop_transactions(env.client.app.state.ctx, monkeypatch)  # type: ignore[attr-defined]
    for _ in range(2):
        assert _attest(env)["accepted"] is True
    assert on_loop and not any(on_loop), on_loop


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_admission_re_appraisal_uses_the_set(env: Env) -> None:
    policy = load_policy(json.dumps(_policy(env, {"refvalues": "fe"})))
    assert policy.refvalue_sets() == frozenset({"fe"})
    claims = {"platform": "simulated", "measurement": GOOD}
    fe = RefValueSet.of("fe", [(GOOD, 3, "fe.corim", "corim-3")])
    d = appraise_admitted(claims, policy, {"fe": fe}.get)
    assert d.accepted and "measurement_allowed" in d.passed
    assert d.notes and "CoRIM #3 fe.corim, CoRIM id corim-3" in d.notes[0].message
    assert d.to_json()["notes"][0]["code"] == "refvalue_matched"
    d = appraise_admitted({**claims, "measurement": OTHER}, policy, {"fe": fe}.get)
    assert not d.accepted and d.reasons[0].code == "measurement_not_allowed"
    d = appraise_admitted(claims, policy)  # no store at hand (e.g. veritee verify): refused
    assert [r.code for r in d.reasons] == ["refvalues_unavailable"]


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "pins",
    [
        {"refvalues": "Bad Name"},
        {"refvalues": ""},
        {"refvalues": "x", "extra": 1},
        {"other": "x"},
        ["zz"],
    ],
)
def test_bad_set_references_refused(env: Env, pins: Any) -> None:
    with pytest.raises(PolicyError):
        load_policy(json.dumps(_policy(env, pins)))


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_another_replica_sees_changes_and_the_cache_is_bounded(env: Env) -> None:
    """A second service on the same database (another worker or replica) reads a set again after
    a change anywhere (the domain's reference-value generation); at most MAX_REFVALUE_SETS sets
    are kept."""
    from veritee.service.app import create_app
    from veritee.service.settings import Settings

    other = create_app(
        Settings(data_dir=env.domain.path, database_url=env.db_url, policy_cache_seconds=0)
    ).state.ctx
    assert len(other.refvalue_set("payments-frontend")) == 0
    policy = load_policy(json.dumps(_policy(env, {"refvalues": "payments-frontend"})))
    assert other.refvalues_for(policy)("payments-frontend") is None  # empty: unknown
    source = _register(env, _corim(GOOD, OTHER))
    assert len(other.refvalue_set("payments-frontend")) == 2
    found = other.refvalues_for(policy)("payments-frontend")
    assert (
        found is not None and found.match(GOOD) is not None and found.match(GOOD).id == source["id"]
    )
    assert other.refvalues_if_cached(policy) is None  # policy_cache_seconds=0: always looks again
    env.client.post(f"/v1/admin/refvalues/{source['id']}/withdraw", headers=env.admin, json={})
    assert len(other.refvalue_set("payments-frontend")) == 0
    for i in range(other.MAX_REFVALUE_SETS + 5):
        other.refvalue_set(f"set-{i}")
    assert len(other._refvalue_sets) == other.MAX_REFVALUE_SETS
    other.storage.close()


def test_async_handlers_read_refvalues_off_the_event_loop(env: Env, monkeypatch: Any) -> None:
    """The release and sealing-key handlers appraise on the event loop; the reference-value
    generation check they need (a database read about once per ``policy_cache_seconds``) runs
    in a database thread (:meth:`ServiceContext.refvalues_async`), and a withdrawn CoRIM still
    empties the set after the lookup was warm."""
    import asyncio
    import threading

    from veritee.service.app import create_app
    from veritee.service.settings import Settings

    settings = Settings(data_dir=env.domain.path, database_url=env.db_url, policy_cache_seconds=0)
    other = create_app(settings).state.ctx
    policy = load_policy(json.dumps(_policy(env, {"refvalues": "payments-frontend"})))
    source = _register(env, _corim(GOOD))
    readers: list[int] = []
    real = other.storage.transaction

    def spy(*args: Any, **kwargs: Any) -> Any:
        readers.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(other.storage, "transaction", spy)

    async def lookup() -> tuple[int, Any]:
        return threading.get_ident(), (await other.refvalues_async(policy))("payments-frontend")

    try:
        loop_thread, found = asyncio.run(lookup())
        assert found is not None and found.match(GOOD) is not None
        assert readers and loop_thread not in readers
        env.client.post(f"/v1/admin/refvalues/{source['id']}/withdraw", headers=env.admin, json={})
        readers.clear()
        loop_thread, found = asyncio.run(lookup())
        assert found is None  # withdrawn: unknown again, the warm lookup is not kept
        assert readers and loop_thread not in readers
    finally:
        other.close()
        other.storage.close()


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_the_sdk_hint_points_at_the_set(env: Env) -> None:
    """A refusal under a set-based allow-list tells the workload's operator to register a CoRIM
    in that set (not `veritee admit`, which cannot edit a set)."""
    from veritee.sdk.refusals import admission_hint

    env.install_policy(_policy(env, {"refvalues": "payments-frontend"}))
    _register(env, _corim(GOOD))
    workload = env.workload(OTHER)
    refused = _attest(env, OTHER)
    hint = admission_hint(refused["reasons"], workload, "http://svc")
    assert hint is not None and "veritee refvalues add CORIM_FILE --set payments-frontend" in hint
    assert OTHER in hint
    literal = admission_hint([{"code": "measurement_not_allowed", "message": "measurement x is not in the policy's "
                               "allow-list"}], workload, "http://svc")  # fmt: skip
    assert literal is not None and "veritee admit" in literal
