"""The service in-process, on SQLite and PostgreSQL: challenge, attest, certify, admin, errors."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.service.conftest import GOOD, OTHER, Env, default_policy

from veritee import oids
from veritee.binding import spki_der
from veritee.errors import VerificationError
from veritee.tokens import decode_ear


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_attest_returns_verifiable_ear(env: Env) -> None:
    env.install_policy()
    body = env.attest_body()
    r = env.client.post("/v1/attest", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] is True
    assert out["claims"]["measurement"] == GOOD
    jwks = env.client.get("/.well-known/jwks.json").json()["keys"]
    assert jwks[0]["kid"] == jwt.get_unverified_header(out["token"])["kid"]
    ear = decode_ear(
        out["token"], env.domain.token_key.public_key(), issuer="veritee", audience="veritee"
    )
    sub = ear["submods"]["simulated"]
    assert sub["ear.status"] in ("affirming", "warning")
    assert ear["eat_nonce"]
    assert sub["ear.trustworthiness-vector"]["instance-identity"] == 2
    assert jwt.get_unverified_header(out["token"])["typ"] == "eat+jwt"
    assert "cnf" not in ear  # no key was bound


def test_attest_token_names_its_audience_and_binds_the_workload_key(env: Env) -> None:
    """Issue 13 item 6: ``aud`` as asked (else the domain), ``cnf`` the key the evidence bound;
    a refused appraisal's token is refused by the relying party unless it asks for it."""
    env.install_policy()
    key = ec.generate_private_key(ec.SECP256R1())
    body = env.attest_body(spki=spki_der(key.public_key())) | {
        "public_key": _pem(key),
        "audience": "https://payments.example/api",
    }
    out = env.client.post("/v1/attest", json=body).json()
    pub = env.domain.token_key.public_key()
    ear = decode_ear(out["token"], pub, issuer="veritee", audience="https://payments.example/api",
                     holder_key=key.public_key())  # fmt: skip
    assert ear["cnf"]["jwk"]["crv"] == "P-256"
    with pytest.raises(VerificationError) as e:
        decode_ear(out["token"], pub, issuer="veritee", audience="veritee")
    assert e.value.code == "ear_audience_mismatch"
    for audience in ("veritee/kbs", "", "has space", "x" * 300):
        r = env.client.post("/v1/attest", json=env.attest_body() | {"audience": audience})
        assert r.status_code == 400, audience
    stranger = env.workload(OTHER)
    out = env.client.post("/v1/attest", json=env.attest_body(stranger)).json()
    assert out["accepted"] is False
    with pytest.raises(VerificationError) as e:
        decode_ear(out["token"], pub, issuer="veritee", audience="veritee")
    assert e.value.code == "ear_contraindicated"
    ear = decode_ear(
        out["token"], pub, issuer="veritee", audience="veritee", allow_contraindicated=True
    )
    assert ear["submods"]["simulated"]["ear.status"] == "contraindicated"


def test_without_policy_everything_is_refused(env: Env) -> None:
    r = env.client.post("/v1/attest", json=env.attest_body())
    assert r.status_code == 200
    assert r.json()["accepted"] is False
    assert [x["code"] for x in r.json()["reasons"]] == ["no_policy"]


def test_unlisted_measurement_and_untrusted_key_give_every_reason(env: Env, tmp_path) -> None:
    env.install_policy()
    from veritee.platforms.simulated import SimulatedPlatform

    stranger = SimulatedPlatform(tmp_path / "other-machine", measurement=OTHER)
    r = env.client.post("/v1/attest", json=env.attest_body(stranger))
    codes = {x["code"] for x in r.json()["reasons"]}
    assert codes == {"platform_key_not_trusted", "measurement_not_allowed"}
    assert r.json()["status"] == "contraindicated"


def test_installing_a_second_named_policy_never_replaces_the_first(env: Env) -> None:
    """DESIGN "Several named policies" (issue 18 item 7): install "a", then "b" for another
    workload; the workload "a" admits is still admitted (it used to be refused once "b" was
    installed), "b"'s workload too, each decision naming its policy; a stranger is refused."""
    key = [env.platform.key_id]
    env.install_policy(
        {
            "version": 1,
            "name": "a",
            "platforms": {
                "simulated": {"measurements": [GOOD], "platform_keys": key, "allow_debug": True}
            },
        }
    )
    env.install_policy(
        {
            "version": 1,
            "name": "b",
            "platforms": {
                "simulated": {"measurements": [OTHER], "platform_keys": key, "allow_debug": True}
            },
        }
    )
    for measurement, name in ((GOOD, "a"), (OTHER, "b")):
        out = env.client.post("/v1/attest", json=env.attest_body(env.workload(measurement))).json()
        assert out["accepted"] is True, out["reasons"]
        assert out["policy"]["name"] == name
    stranger = env.client.post("/v1/attest", json=env.attest_body(env.workload("ef" * 48))).json()
    assert [r["code"] for r in stranger["reasons"]] == ["measurement_not_allowed"]
    listed = env.client.get("/v1/admin/policies", headers=env.admin).json()["policies"]
    assert [(p["name"], p["version"]) for p in listed] == [("a", 1), ("b", 1)]
    got = env.client.get("/v1/admin/policy", params={"name": "a"}, headers=env.admin).json()
    assert got["policy"]["platforms"]["simulated"]["measurements"] == [GOOD]
    missing = env.client.get("/v1/admin/policy", params={"name": "c"}, headers=env.admin)
    assert missing.status_code == 404 and missing.json()["code"] == "no_policy"

    # A request may name the policy: then only that one decides.
    named = env.client.post(
        "/v1/attest", json=env.attest_body(env.workload(GOOD)) | {"policy": "b"}
    ).json()
    assert named["accepted"] is False and named["policy"]["name"] == "b"
    assert [r["code"] for r in named["reasons"]] == ["measurement_not_allowed"]
    named = env.client.post(
        "/v1/attest", json=env.attest_body(env.workload(GOOD)) | {"policy": "a"}
    ).json()
    assert named["accepted"] is True and named["policy"]["name"] == "a"
    unknown = env.client.post("/v1/attest", json=env.attest_body() | {"policy": "c"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "no_policy"


def test_nonce_single_use_unknown_and_expired(env: Env) -> None:
    env.install_policy()
    body = env.attest_body()
    assert env.client.post("/v1/attest", json=body).status_code == 200
    r = env.client.post("/v1/attest", json=body)
    assert r.status_code == 409 and r.json()["code"] == "nonce_reused"
    assert r.headers["content-type"].startswith("application/problem+json")
    body2 = env.attest_body(nonce=b"\x01" * 32)
    r = env.client.post("/v1/attest", json=body2)
    assert r.status_code == 400 and r.json()["code"] == "nonce_unknown"
    # expired: issue with a ttl already over by moving the clock of the context
    ctx = env.client.app.state.ctx
    nonce = env.nonce()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    ctx.now = lambda: later  # type: ignore[method-assign]
    r = env.client.post("/v1/attest", json=env.attest_body(nonce=nonce))
    assert r.json()["code"] == "nonce_expired"
    # each refusal is in the audit log
    entries = env.client.get("/v1/admin/audit?limit=100", headers=env.admin).json()["entries"]
    kinds = [e["kind"] for e in entries]
    assert kinds.count("attest.nonce_rejected") == 3


def test_nonce_binding_is_checked(env: Env) -> None:
    env.install_policy()
    n1, n2 = env.nonce(), env.nonce()
    body = env.attest_body(nonce=n1)
    body["nonce"] = n2.hex()  # evidence binds n1, request presents n2
    r = env.client.post("/v1/attest", json=body)
    assert r.status_code == 200
    assert "binding_mismatch" in {x["code"] for x in r.json()["reasons"]}


def test_certify_issues_admission_certificate(env: Env) -> None:
    env.install_policy()
    key = ec.generate_private_key(ec.SECP256R1())
    nonce = env.nonce()
    body = env.attest_body(nonce=nonce, spki=spki_der(key.public_key()))
    body["public_key"] = _pem(key)
    r = env.client.post("/v1/certify", json=body)
    assert r.status_code == 200, r.text
    cert = x509.load_pem_x509_certificate(r.json()["certificate"].encode())
    cert.verify_directly_issued_by(env.domain.ca_certificate)
    assert spki_der(cert.public_key()) == spki_der(key.public_key())
    ext = cert.extensions.get_extension_for_oid(oids.MEASUREMENT).value
    assert oids.decode_utf8_string(ext.value) == GOOD
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life <= dt.timedelta(hours=1, minutes=1)
    ear = decode_ear(r.json()["token"], env.domain.token_key.public_key(), issuer="veritee",
                     audience="veritee", holder_key=key.public_key())  # fmt: skip
    assert ear["cnf"]["jwk"]["x"]


def test_certify_refuses_key_not_bound(env: Env) -> None:
    env.install_policy()
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    body = env.attest_body(spki=spki_der(key.public_key()))
    body["public_key"] = _pem(other)
    r = env.client.post("/v1/certify", json=body)
    assert r.status_code == 403
    assert r.json()["code"] == "attestation_refused"
    assert "binding_mismatch" in {x["code"] for x in r.json()["reasons"]}
    entries = env.client.get("/v1/admin/audit", headers=env.admin).json()["entries"]
    assert entries[-1]["kind"] == "certify" and entries[-1]["decision"] == "reject"


def test_production_policy_refuses_debuggable_build(env: Env) -> None:
    doc = default_policy(env.platform)
    doc["profiles"] = ["production"]
    doc["platforms"]["simulated"]["allow_debug"] = True
    env.install_policy(doc)
    dev = env.platform  # development profile, debuggable
    r = env.client.post("/v1/attest", json=env.attest_body(dev))
    codes = {x["code"] for x in r.json()["reasons"]}
    assert {"profile_not_allowed", "debug_in_production"} <= codes
    from veritee.profiles import Profile

    prod = env.workload(profile=Profile.PRODUCTION)
    r = env.client.post("/v1/attest", json=env.attest_body(prod))
    assert r.json()["accepted"] is True


ADMIN_CALLS = [
    ("get", "/v1/admin/policy"),
    ("put", "/v1/admin/policy"),
    ("post", "/v1/admin/policy/dry-run"),
    ("get", "/v1/admin/audit"),
    ("get", "/v1/admin/audit/verify"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_every_admin_endpoint_refuses_without_credential(
    env: Env, method: str, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    r = env.client.request(method, path, headers=headers, content=b"{}")
    assert r.status_code == 401
    assert r.json()["code"] in ("admin_required", "admin_invalid")


def test_every_admin_route_refuses_without_credential(env: Env) -> None:
    """Walk the app's routes, so admin routes added later are covered too."""
    import re

    checked = 0
    for path, item in env.client.app.openapi()["paths"].items():
        if not (path.startswith("/v1/admin") or path.startswith("/kbs/v0/admin")):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in item:
            r = env.client.request(method.upper(), concrete, content=b"{}")
            assert r.status_code == 401, (method, path, r.status_code)
            checked += 1
    assert checked >= len(ADMIN_CALLS)


def test_policy_refusals(env: Env) -> None:
    from veritee.appraisal import load_policy, sign_policy

    doc = default_policy(env.platform)
    # unsigned
    r = env.client.put("/v1/admin/policy", content=json.dumps(doc), headers=env.admin)
    assert r.status_code == 400 and r.json()["code"] == "policy_unsigned"
    # signed by another key
    stranger = ec.generate_private_key(ec.SECP384R1())
    r = env.client.put(
        "/v1/admin/policy",
        content=sign_policy(load_policy(json.dumps(doc)), stranger),
        headers=env.admin,
    )
    assert r.json()["code"] == "policy_wrong_key"
    # tampered after signing
    env_bytes = sign_policy(load_policy(json.dumps(doc)), env.domain.policy_key)
    tampered = json.loads(env_bytes)
    tampered["policy"] = tampered["policy"].replace('"allow_debug":true', '"allow_debug":false')
    r = env.client.put("/v1/admin/policy", content=json.dumps(tampered), headers=env.admin)
    assert r.json()["code"] == "policy_signature_invalid"
    # garbage
    r = env.client.put("/v1/admin/policy", content=b"\xff\x00garbage{", headers=env.admin)
    assert r.status_code == 400
    assert env.client.get("/v1/admin/policy", headers=env.admin).status_code == 404


def test_dry_run_does_not_install(env: Env) -> None:
    doc = default_policy(env.platform)
    ev = env.platform.evidence(b"\0" * 64)
    r = env.client.post(
        "/v1/admin/policy/dry-run",
        headers=env.admin,
        json={"policy": json.dumps(doc), "evidence": base64.b64encode(ev).decode()},
    )
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True and r.json()["accepted"] is True
    assert env.client.get("/v1/admin/policy", headers=env.admin).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"evidence": 5, "nonce": "00"}',
        b'{"evidence": "AAAA", "nonce": "zz"}',
        b'{"evidence": "%%%", "nonce": "00"}',
        b'{"evidence": "AAAA", "nonce": "00", "unexpected": 1}',
    ],
)
def test_garbage_requests_get_problem_details(env: Env, body: bytes) -> None:
    r = env.client.post("/v1/attest", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 400


def test_malformed_truncated_tampered_evidence_is_refused_and_audited(env: Env) -> None:
    env.install_policy()
    good = base64.b64decode(env.attest_body()["evidence"])
    cases = {
        "truncated": good[:100],
        "random": bytes(range(256)) * 2,
        "tampered": good[:20] + bytes([good[20] ^ 1]) + good[21:],
    }
    for name, data in cases.items():
        n = env.nonce()
        r = env.client.post(
            "/v1/attest", json={"evidence": base64.b64encode(data).decode(), "nonce": n.hex()}
        )
        assert r.status_code == 200, name
        assert r.json()["accepted"] is False, name
        assert r.json()["reasons"], name
    entries = env.client.get("/v1/admin/audit?limit=1000", headers=env.admin).json()["entries"]
    assert sum(1 for e in entries if e["kind"] == "attest" and e["decision"] == "reject") == 3


def test_oversized_body_is_413(env: Env) -> None:
    big = b'{"evidence": "' + b"A" * (2 * 1024 * 1024) + b'", "nonce": "00"}'
    r = env.client.post("/v1/attest", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "oversized"


def test_operations_endpoints(env: Env) -> None:
    assert env.client.get("/healthz").json() == {"status": "ok"}
    assert env.client.get("/readyz").status_code == 200
    env.client.post("/v1/challenge")
    metrics = env.client.get("/metrics").text
    assert (
        "veritee_http_requests_total" in metrics
        and "veritee_request_duration_seconds_bucket" in metrics
    )
    spec = env.client.get("/openapi.json").json()
    assert "/v1/attest" in spec["paths"] and "/v1/certify" in spec["paths"]
    assert env.client.get("/nope").json()["code"] == "not_found"


def test_audit_chain_over_api(env: Env) -> None:
    env.install_policy()
    for _ in range(3):
        env.client.post("/v1/attest", json=env.attest_body())
    report = env.client.get("/v1/admin/audit/verify", headers=env.admin).json()
    assert report == {"ok": True, "count": 4, "first_broken": None, "message": report["message"]}
