"""POST /v1/sealing-key: the domain-released sealing key (issue 18.3, 13.3), on SQLite and
PostgreSQL, fetched by the SDK's client (:func:`veritee.sdk.secrets.fetch_sealing_key`)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.service.conftest import GOOD, OTHER, Env

from veritee.binding import report_data_for, spki_der
from veritee.errors import NonceError, VerificationError
from veritee.evidence.simulated import sign_report
from veritee.keybroker import sealing_keys
from veritee.keybroker.release import open_envelope, x25519_jwk
from veritee.keybroker.wrap import jwk_from_public_key
from veritee.platforms.simulated import load_or_create_platform_key
from veritee.profiles import Profile
from veritee.sdk.secrets import fetch_sealing_key, fetch_sealing_key_certified
from veritee.sdk.trust import Trust, error_from_problem
from veritee.service.app import create_app
from veritee.service.settings import Settings
from veritee.service.storage.models import SEALING_ROOTS

NOT_ADMITTED = "ef" * 48


def _policy(
    env: Env, name: str = "flaskr", measurements: tuple[str, ...] = (GOOD, OTHER)
) -> dict[str, Any]:
    return {"version": 1, "name": name, "platforms": {"simulated": {
        "measurements": list(measurements), "platform_keys": [env.platform.key_id], "allow_debug": True}}}  # fmt: skip


def _key(env: Env, measurement: str = GOOD, profile: Profile = Profile.PRODUCTION) -> bytes:
    got = fetch_sealing_key(
        env.client,
        env.workload(measurement, profile=profile),
        ca_certificate=env.domain.ca_certificate,
    )
    assert got.profile is profile and got.generation == 1
    assert "redacted" in repr(got) and got.key.reveal().hex() not in repr(got)
    return got.key.reveal()


def _audit(env: Env) -> list[dict[str, Any]]:
    r = env.client.get("/v1/admin/audit?limit=500", headers=env.admin)
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def test_one_key_per_workload_and_profile_for_every_admitted_measurement(env: Env) -> None:
    """An upgrade (measurement A -> B, both admitted) gets the same key; another profile or
    another workload name gets another; the audit says who got which, never the key."""
    env.install_policy(_policy(env))
    a = _key(env, GOOD)
    assert len(a) == 32
    assert _key(env, OTHER) == a  # the upgrade
    assert _key(env, GOOD) == a  # and again: derived, not random per release
    dev = _key(env, GOOD, Profile.DEVELOPMENT)
    staging = _key(env, GOOD, Profile.STAGING)
    assert len({a, dev, staging}) == 3
    env.install_policy(_policy(env, name="another-app"))
    assert _key(env, GOOD) not in (a, dev, staging)
    releases = [e for e in _audit(env) if e["kind"] == "sealing_key.release"]
    assert [(e["subject"], e["details"]["measurement"]) for e in releases] == [
        ("production/flaskr", GOOD), ("production/flaskr", OTHER), ("production/flaskr", GOOD),
        ("development/flaskr", GOOD), ("staging/flaskr", GOOD), ("production/another-app", GOOD),
    ]  # fmt: skip
    assert all(e["decision"] == "accept" and e["details"]["workload"] for e in releases)
    text = json.dumps(_audit(env))
    for key in (a, dev, staging):
        assert key.hex() not in text and base64.b64encode(key).decode() not in text


def test_a_measurement_the_policy_does_not_admit_is_refused_and_audited(env: Env) -> None:
    env.install_policy(_policy(env))
    with pytest.raises(VerificationError) as e:
        _key(env, NOT_ADMITTED)
    assert e.value.code == "sealing_key_denied"
    codes = {r["code"] for r in e.value.reasons}  # type: ignore[attr-defined]
    assert "measurement_not_allowed" in codes
    deny = [x for x in _audit(env) if x["kind"] == "sealing_key.deny"]
    assert len(deny) == 1 and deny[0]["decision"] == "reject"
    assert deny[0]["details"]["measurement"] == NOT_ADMITTED


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_no_policy_no_key(env: Env) -> None:
    with pytest.raises(VerificationError) as e:
        _key(env)
    assert e.value.code == "sealing_key_denied"
    assert {r["code"] for r in e.value.reasons} == {"no_policy"}  # type: ignore[attr-defined]


def _body(env: Env, platform: Any, *, profile: Profile | None = None,
          nonce: bytes | None = None) -> tuple[dict[str, Any], x25519.X25519PrivateKey, bytes]:  # fmt: skip
    nonce = nonce or env.nonce()
    key = x25519.X25519PrivateKey.generate()
    rd = report_data_for(nonce, spki_der(key.public_key()), profile=profile or platform.profile)
    body = {"evidence": base64.b64encode(platform.evidence(rd)).decode(), "nonce": nonce.hex(),
            "format": "simulated", "public_key": x25519_jwk(key.public_key())}  # fmt: skip
    return body, key, nonce


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_development_instance_that_claims_production_gets_nothing(env: Env) -> None:
    """The profile is the attested one: a debug development instance binding "production" in
    its report data is refused, and its own answer never opens as a production key."""
    env.install_policy(_policy(env))
    dev = env.workload(GOOD, profile=Profile.DEVELOPMENT)
    assert dev.debug
    body, _, _ = _body(env, dev, profile=Profile.PRODUCTION)
    r = env.client.post("/v1/sealing-key", json=body)
    assert r.status_code == 403 and r.json()["code"] == "sealing_key_denied"
    assert "binding_mismatch" in {x["code"] for x in r.json()["reasons"]}
    body, key, nonce = _body(env, dev)
    reply = env.client.post("/v1/sealing-key", json=body).json()
    assert reply["profile"] == "development"
    with pytest.raises(VerificationError) as e:  # a host passing it off as production's
        open_envelope(reply, key, name=sealing_keys.envelope_name(Profile.PRODUCTION, "flaskr"),
                      nonce=nonce, ca_certificate=env.domain.ca_certificate, at=dt.datetime.now(dt.UTC))  # fmt: skip
    assert e.value.code == "envelope_invalid"


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_replayed_nonce_and_bad_input(env: Env) -> None:
    env.install_policy(_policy(env))
    body, _, _ = _body(env, env.workload(GOOD, profile=Profile.PRODUCTION))
    assert env.client.post("/v1/sealing-key", json=body).status_code == 200
    r = env.client.post("/v1/sealing-key", json=body)
    assert r.status_code == 409, r.text
    assert [e["decision"] for e in _audit(env) if e["kind"].startswith("sealing_key.")] == [
        "accept",
        "reject",
    ]
    for bad in ({**body, "evidence": "%%%"}, {**body, "nonce": "zz"}, {**body, "public_key": "AAAA"},
                {**body, "public_key": {"kty": "OKP", "crv": "Ed25519", "x": "AA"}},
                {**body, "evidence": "A" * 500_000}, {**body, "extra": 1}):  # fmt: skip
        r = env.client.post("/v1/sealing-key", json=bad)
        assert 400 <= r.status_code < 500, (bad.keys(), r.status_code, r.text)
    assert isinstance(error_from_problem(env.client.post("/v1/sealing-key", json=body)), NonceError)
    for path in ("/v1/sealing-key", "/v1/sealing-key/certified"):
        for raw, code in (
            (b"[" * 5000 + b"]" * 5000, "json_too_deep"),
            (b'{"nonce": ' + b"9" * 5000 + b"}", "integer_too_long"),
        ):
            r = env.client.post(path, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["code"] == code, (path, r.status_code, r.text)


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_the_root_is_stored_only_wrapped_by_the_kek(env: Env) -> None:
    """The database holds the root wrapped by the KEK (made once, on first use): changed there,
    it does not unwrap, and the broker refuses (and audits) instead of deriving from garbage."""
    env.install_policy(_policy(env))
    key = _key(env)
    assert _key(env, OTHER) == key
    ctx = env.client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.storage.transaction() as tx:
        rows = tx._conn.execute(select(SEALING_ROOTS)).all()
        assert len(rows) == 1 and rows[0].generation == 1 and rows[0].kek_id == ctx.kek.kek_id
        wrapped = bytes(rows[0].wrapped_root)
        assert len(wrapped) == 1 + 12 + 32 + 16  # AesGcmKek: version, nonce, root, tag
        flipped = wrapped[:20] + bytes([wrapped[20] ^ 1]) + wrapped[21:]
        tx._conn.execute(update(SEALING_ROOTS).values(wrapped_root=flipped))
    with pytest.raises(VerificationError) as e:
        _key(env)
    assert e.value.code == "sealing_root_unavailable"
    deny = [x for x in _audit(env) if x["kind"] == "sealing_key.deny"][-1]
    assert deny["details"]["release_reasons"][0]["code"] == "sealing_root_unavailable"


@pytest.mark.parametrize("db_kind", ["postgres"], indirect=True)
def test_replicas_making_the_root_at_once_agree_on_it(env: Env) -> None:
    """Two replicas on one PostgreSQL database, each serving its domain's first sealing-key
    release at the same moment: one root is stored, and both release the same key."""
    env.install_policy(_policy(env))
    replica = create_app(
        Settings(data_dir=env.domain.path, database_url=env.db_url, policy_cache_seconds=0)
    )
    with TestClient(replica) as other:
        clients = [env.client, other] * 3
        start = threading.Barrier(len(clients))
        keys: list[bytes] = []

        def one(client: TestClient) -> None:
            platform = env.workload(GOOD, profile=Profile.PRODUCTION)
            start.wait()
            got = fetch_sealing_key(client, platform, ca_certificate=env.domain.ca_certificate)
            keys.append(got.key.reveal())

        threads = [threading.Thread(target=one, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(keys) == len(clients) and len(set(keys)) == 1
        ctx = other.app.state.ctx  # type: ignore[attr-defined]
        with ctx.storage.transaction(readonly=True) as tx:
            assert len(tx._conn.execute(select(SEALING_ROOTS)).all()) == 1


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_jwe_recipient_gets_the_same_key(env: Env) -> None:
    """An EC P-256 recipient (JWE envelope, as Trustee-style clients ask) gets the same key as
    the SDK's X25519 one, signed by the key broker for that key and nonce."""
    env.install_policy(_policy(env))
    platform = env.workload(GOOD, profile=Profile.PRODUCTION)
    nonce = env.nonce()
    key = ec.generate_private_key(ec.SECP256R1())
    rd = report_data_for(nonce, spki_der(key.public_key()), profile=platform.profile)
    body = {"evidence": base64.b64encode(platform.evidence(rd)).decode(), "nonce": nonce.hex(),
            "format": "simulated", "public_key": jwk_from_public_key(key.public_key(), alg="ECDH-ES+A256KW")}  # fmt: skip
    r = env.client.post("/v1/sealing-key", json=body)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["envelope"] == "jwe" and (reply["workload"], reply["profile"]) == (
        "flaskr",
        "production",
    )
    value = open_envelope(reply, key, name=sealing_keys.envelope_name(Profile.PRODUCTION, "flaskr"), nonce=nonce,
                          ca_certificate=env.domain.ca_certificate, at=dt.datetime.now(dt.UTC))  # fmt: skip
    assert value == _key(env)


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_certified_workload_gets_its_key_until_the_policy_drops_it(
    env: Env, tmp_path: Path
) -> None:
    """Admission certificate + proof of possession, no new evidence: the same key as fresh
    evidence gets; its claims are re-appraised under the policy in force, so a measurement the
    policy has dropped gets nothing while its certificate is still valid."""
    env.install_policy(_policy(env))
    trust = Trust("https://testserver", env.domain.ca_pem, platform="simulated", measurement=GOOD,
                  profile="production", platform_dir=env.platform_dir, store=tmp_path / "store",
                  transport=env.client._transport)  # fmt: skip
    pem = trust.certify().public_bytes(serialization.Encoding.PEM)
    key = trust.keystore.private_key()
    assert key is not None
    ca = env.domain.ca_certificate
    got = fetch_sealing_key_certified(env.client, key, pem, Profile.PRODUCTION, ca_certificate=ca)
    assert got.workload == "flaskr" and got.key.reveal() == _key(env, GOOD)

    with pytest.raises(VerificationError) as e:  # someone else's key signs the proof
        fetch_sealing_key_certified(env.client, ec.generate_private_key(ec.SECP256R1()), pem,
                                    Profile.PRODUCTION, ca_certificate=ca)  # fmt: skip
    assert e.value.code == "sealing_key_denied"
    assert "possession_not_proven" in {r["code"] for r in e.value.reasons}  # type: ignore[attr-defined]
    with pytest.raises(
        VerificationError
    ) as e:  # the broker releases the certificate's profile only
        fetch_sealing_key_certified(env.client, key, pem, Profile.DEVELOPMENT, ca_certificate=ca)
    assert e.value.code == "envelope_invalid"

    env.install_policy(_policy(env, measurements=(OTHER,)))
    with pytest.raises(VerificationError) as e:
        fetch_sealing_key_certified(env.client, key, pem, Profile.PRODUCTION, ca_certificate=ca)
    assert e.value.code == "sealing_key_denied"
    assert {r["code"] for r in e.value.reasons} == {"measurement_not_allowed"}  # type: ignore[attr-defined]
    deny = [x for x in _audit(env) if x["kind"] == "sealing_key.deny"][-1]
    assert (
        deny["details"]["via"] == "admission_certificate" and deny["details"]["measurement"] == GOOD
    )
    trust.close()


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_debug_launch_signed_as_production_gets_the_development_key(env: Env) -> None:
    """Evidence that says "production" and "debug" at once attests development (a debug launch
    is never above development): binding "production" is refused, binding development gets the
    development key, never the production one."""
    env.install_policy(_policy(env))
    platform_key = load_or_create_platform_key(env.platform_dir)

    def ask(runs_as: Profile) -> Any:
        nonce = env.nonce()
        key = x25519.X25519PrivateKey.generate()
        rd = report_data_for(nonce, spki_der(key.public_key()), profile=runs_as)
        ev = sign_report(platform_key, measurement=bytes.fromhex(GOOD), report_data=rd,
                         profile=Profile.PRODUCTION, debug=True)  # fmt: skip
        body = {"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(), "format": "simulated",
                "public_key": x25519_jwk(key.public_key())}  # fmt: skip
        return env.client.post("/v1/sealing-key", json=body), key, nonce

    r, _, _ = ask(Profile.PRODUCTION)
    assert r.status_code == 403 and "binding_mismatch" in {x["code"] for x in r.json()["reasons"]}
    r, key, nonce = ask(Profile.DEVELOPMENT)
    assert r.status_code == 200 and r.json()["profile"] == "development"
    value = open_envelope(r.json(), key, name=sealing_keys.envelope_name(Profile.DEVELOPMENT, "flaskr"),
                          nonce=nonce, ca_certificate=env.domain.ca_certificate, at=dt.datetime.now(dt.UTC))  # fmt: skip
    assert value == _key(env, GOOD, Profile.DEVELOPMENT) != _key(env, GOOD, Profile.PRODUCTION)
