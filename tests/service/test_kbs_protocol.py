"""Trustee KBS protocol, spoken as the published description (kbs_attestation_protocol.md) says."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi.testclient import TestClient
from tests.conftest import TESTVECTORS, manifest_cases
from tests.service.conftest import OTHER, Env, default_policy
from tests.sev_crate_json import LAYOUTS, sev_evidence

from veritee.service.app import create_app
from veritee.service.settings import Settings

SECRET = b"-----BEGIN KEY----- guest image key -----END KEY-----"
PREFIX = "https://github.com/confidential-containers/kbs/errors/"


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _b64ud(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _setup(env: Env, measurement: str | None = None) -> None:
    env.install_policy()
    policy = {
        "allOf": [{"claim": "measurement", "equals": measurement or env.platform.measurement}]
    }
    body = {"value": base64.b64encode(SECRET).decode(), "policy": policy}
    r = env.client.put("/v1/admin/secrets/default/key/image", json=body, headers=env.admin)
    assert r.status_code == 200, r.text


def _ec_jwk(sk: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    n = sk.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
            "x": _b64u(n.x.to_bytes(32, "big")), "y": _b64u(n.y.to_bytes(32, "big"))}  # fmt: skip


def _rsa_jwk(sk: rsa.RSAPrivateKey) -> dict[str, str]:
    n = sk.public_key().public_numbers()
    return {"kty": "RSA", "alg": "RSA-OAEP", "n": _b64u(n.n.to_bytes(256, "big")), "e": "AQAB"}


def _attestation(
    env: Env, challenge: dict[str, Any], jwk: dict[str, str], *, old: bool = False,
    platform: Any = None, bind_jwk: dict[str, str] | None = None,
    composite: str | None = None, bind_additional: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``composite``: send protocol 0.4's CompositeEvidence with this additional_evidence
    (the primary evidence then binds it as ``additional-evidence``; ``bind_additional``
    binds another string instead)."""
    alg = challenge["extra-params"].get("selected-hash-algorithm", "sha384")
    runtime = {"tee-pubkey": bind_jwk or jwk, "nonce": challenge["nonce"]}
    if composite is not None:
        runtime["additional-evidence"] = composite if bind_additional is None else bind_additional
    # serde_json serializes a Value with sorted keys and no whitespace
    text = json.dumps(runtime, sort_keys=True, separators=(",", ":")).encode()
    report_data = hashlib.new(alg, text).digest().ljust(64, b"\0")
    ev: Any = {"evidence": base64.b64encode((platform or env.platform).evidence(report_data)).decode()}
    if old:
        return {"tee-pubkey": jwk, "tee-evidence": json.dumps(ev)}
    if composite is not None:
        ev = {"primary_evidence": ev, "additional_evidence": composite}
    return {"runtime-data": {"tee-pubkey": jwk, "nonce": challenge["nonce"]}, "tee-evidence": ev}


def _auth(client: TestClient, version: str = "0.4.0") -> dict[str, Any]:
    req = {"version": version, "tee": "sample",
           "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]}}  # fmt: skip
    r = client.post("/kbs/v0/auth", json=req)
    assert r.status_code == 200, r.text
    assert "kbs-session-id" in r.cookies
    return dict(r.json())


def _decrypt_ec(resp: dict[str, str], sk: ec.EllipticCurvePrivateKey) -> bytes:
    """The guest side: ECDH-ES+A256KW per RFC 7518 §4.6, AAD = protected (RFC 7516 §5.2)."""
    header = json.loads(_b64ud(resp["protected"]))
    assert (header["alg"], header["enc"]) == ("ECDH-ES+A256KW", "A256GCM")
    epk = header["epk"]
    pub = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64ud(epk["x"]), "big"), int.from_bytes(_b64ud(epk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()  # fmt: skip
    z = sk.exchange(ec.ECDH(), pub)
    alg = b"ECDH-ES+A256KW"
    info = len(alg).to_bytes(4, "big") + alg + bytes(8) + (256).to_bytes(4, "big")
    kek = hashlib.sha256(b"\0\0\0\1" + z + info).digest()
    cek = keywrap.aes_key_unwrap(kek, _b64ud(resp["encrypted_key"]))
    return AESGCM(cek).decrypt(
        _b64ud(resp["iv"]), _b64ud(resp["ciphertext"]) + _b64ud(resp["tag"]),
        resp["protected"].encode(),
    )  # fmt: skip


def test_rcar_flow_ec_key_cookie_and_token(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    assert challenge["extra-params"]["selected-hash-algorithm"] == "sha384"
    r = env.client.post("/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk)))
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    r = env.client.get("/kbs/v0/resource/default/key/image")
    assert r.status_code == 200, r.text
    assert set(r.json()) >= {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    assert _decrypt_ec(r.json(), sk) == SECRET
    # the token works without the cookie (another replica, a later request)
    fresh = TestClient(env.client.app)
    r = fresh.get(
        "/kbs/v0/resource/default/key/image", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and _decrypt_ec(r.json(), sk) == SECRET
    entries = env.client.get("/v1/admin/audit?limit=100", headers=env.admin).json()["entries"]
    rel = [e for e in entries if e["kind"] == "secret.release"]
    assert len(rel) == 2 and all(e["details"]["via"] == "kbs" for e in rel)
    assert any(e["kind"] == "kbs.attest" and e["decision"] == "accept" for e in entries)


@pytest.mark.parametrize("additional", ["", '{"sampledevice":{"svn":"1"}}'])
def test_composite_evidence_of_protocol_0_4(env: Env, additional: str) -> None:
    """Today's guest components: tee-evidence = {primary_evidence, additional_evidence}, and the
    primary evidence binds the runtime data with "additional-evidence" in it."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    att = _attestation(env, challenge, _ec_jwk(sk), composite=additional)
    r = env.client.post("/kbs/v0/attest", json=att)
    assert r.status_code == 200, r.text
    r = env.client.get("/kbs/v0/resource/default/key/image")
    assert r.status_code == 200 and _decrypt_ec(r.json(), sk) == SECRET
    entries = env.client.get("/v1/admin/audit?limit=100", headers=env.admin).json()["entries"]
    attest = next(e for e in reversed(entries) if e["kind"] == "kbs.attest")
    if additional:
        assert attest["details"]["additional_evidence"] == {
            "sha256": hashlib.sha256(additional.encode()).hexdigest(), "appraised": False,
        }
    else:
        assert "additional_evidence" not in attest["details"]


def test_composite_evidence_whose_devices_are_swapped_is_refused(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    att = _attestation(env, challenge, _ec_jwk(sk), composite='{"gpu":"B"}', bind_additional='{"gpu":"A"}')
    r = env.client.post("/kbs/v0/attest", json=att)
    assert r.status_code == 401 and "runtime-data" in r.json()["detail"]
    att = _attestation(env, _auth(env.client), _ec_jwk(sk), composite="")
    att["tee-evidence"]["additional_evidence"] = 5
    r = env.client.post("/kbs/v0/attest", json=att)
    assert r.status_code == 400 and "additional_evidence" in r.text
    for primary, status in ((5, 400), (None, 400), ("not json", 400), ({"evidence": "***"}, 400),
                            ({}, 401)):  # {} of tee "sample": unsigned sample evidence  # fmt: skip
        att = _attestation(env, _auth(env.client), _ec_jwk(sk), composite="")
        att["tee-evidence"]["primary_evidence"] = primary
        r = env.client.post("/kbs/v0/attest", json=att)
        assert r.status_code == status, (primary, r.text)
        assert r.json()["detail"], primary


def test_old_protocol_rsa_oaep(env: Env) -> None:
    _setup(env)
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    challenge = _auth(env.client, version="0.1.0")
    att = _attestation(env, challenge, _rsa_jwk(sk), old=True)
    assert env.client.post("/kbs/v0/attest", json=att).status_code == 200
    r = env.client.get("/kbs/v0/resource/default/key/image")
    assert r.status_code == 200, r.text
    resp = r.json()
    assert json.loads(_b64ud(resp["protected"]))["alg"] == "RSA-OAEP"
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    cek = sk.decrypt(_b64ud(resp["encrypted_key"]), oaep)
    plain = AESGCM(cek).decrypt(
        _b64ud(resp["iv"]), _b64ud(resp["ciphertext"]) + _b64ud(resp["tag"]),
        resp["protected"].encode(),
    )  # fmt: skip
    assert plain == SECRET


def _is_error(r: Any, status: int, problem: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == PREFIX + problem and r.json()["detail"]


def test_kbs_errors(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    _is_error(env.client.get("/kbs/v0/resource/default/key/image"), 401, "TokenNotFound")
    _is_error(env.client.post("/kbs/v0/attest", json={}), 401, "InvalidRequest")
    r = env.client.post("/kbs/v0/auth", json={"version": "9.0.0", "tee": "tdx", "extra-params": {}})
    _is_error(r, 401, "InvalidRequest")
    # evidence bound to another key
    challenge = _auth(env.client)
    other = _ec_jwk(ec.generate_private_key(ec.SECP256R1()))
    att = _attestation(env, challenge, _ec_jwk(sk), bind_jwk=other)
    _is_error(env.client.post("/kbs/v0/attest", json=att), 401, "AttestationFailed")
    # replay: the session's nonce is gone after one attempt
    att = _attestation(env, challenge, _ec_jwk(sk))
    _is_error(env.client.post("/kbs/v0/attest", json=att), 401, "InvalidRequest")
    # unsigned sample evidence is refused
    challenge = _auth(env.client)
    sample = {"runtime-data": {"tee-pubkey": _ec_jwk(sk), "nonce": challenge["nonce"]},
              "tee-evidence": {"svn": "1", "report_data": "AAAA"}}  # fmt: skip
    _is_error(env.client.post("/kbs/v0/attest", json=sample), 401, "AttestationFailed")
    # a good session, but an unknown resource and a bad token
    challenge = _auth(env.client)
    assert (
        env.client.post(
            "/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk))
        ).status_code
        == 200
    )
    _is_error(env.client.get("/kbs/v0/resource/default/key/none"), 404, "ResourceNotFound")
    fresh = TestClient(env.client.app)
    r = fresh.get("/kbs/v0/resource/default/key/image", headers={"Authorization": "Bearer x.y.z"})
    _is_error(r, 401, "TokenNotFound")


def test_policy_deny_is_403_and_audited(env: Env) -> None:
    doc = default_policy(env.platform)
    doc["platforms"]["simulated"]["measurements"] = [env.platform.measurement, OTHER]
    env.install_policy(doc)
    policy = {"allOf": [{"claim": "measurement", "equals": env.platform.measurement}]}
    body = {"value": base64.b64encode(SECRET).decode(), "policy": policy}
    env.client.put("/v1/admin/secrets/default/key/image", json=body, headers=env.admin)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    att = _attestation(env, challenge, _ec_jwk(sk), platform=env.workload(OTHER))
    assert env.client.post("/kbs/v0/attest", json=att).status_code == 200
    r = env.client.get("/kbs/v0/resource/default/key/image")
    _is_error(r, 403, "PolicyDeny")
    assert "measurement" in r.json()["detail"]
    entries = env.client.get("/v1/admin/audit?limit=100", headers=env.admin).json()["entries"]
    assert entries[-1]["kind"] == "secret.deny" and entries[-1]["details"]["via"] == "kbs"


# -- SEV-SNP evidence as Trustee's attestation-agent sends it (the sev crate's serde_json) ----
# A real report cannot bind this session's nonce, so the flow must verify the report (the
# signature over the rebuilt bytes, the VCEK chain, the policy) and refuse it only for the
# binding; a changed member must be refused for the signature.

SNP_CASES = [
    c for c in manifest_cases("sev-snp") if c["evidence"].endswith("virtee_milan_report.bin")
]


def _snp_env(env: Env) -> bytes:
    case = SNP_CASES[0]
    env.domain.collateral_dir.mkdir(parents=True, exist_ok=True)
    for p in case["collateral"]:
        shutil.copy(TESTVECTORS / p, env.domain.collateral_dir / Path(p).name)
    m = case["claims"]["measurement"]
    platforms = {"sev-snp": {"measurements": [m]}}
    env.install_policy({"version": 1, "name": "snp", "platforms": platforms})
    return (TESTVECTORS / case["evidence"]).read_bytes()


def _snp_attest(env: Env, evidence: Any) -> Any:
    req = {"version": "0.4.0", "tee": "snp", "extra-params": {}}
    r = env.client.post("/kbs/v0/auth", json=req)
    assert r.status_code == 200, r.text
    jwk = _ec_jwk(ec.generate_private_key(ec.SECP256R1()))
    body = {"runtime-data": {"tee-pubkey": jwk, "nonce": r.json()["nonce"]},
            "tee-evidence": evidence}  # fmt: skip
    return env.client.post("/kbs/v0/attest", json=body)


def _last_attest(env: Env) -> dict[str, Any]:
    entries = env.client.get("/v1/admin/audit?limit=100", headers=env.admin).json()["entries"]
    return dict(next(e for e in reversed(entries) if e["kind"] == "kbs.attest"))


@pytest.mark.skipif(not SNP_CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("layout", [*LAYOUTS, "raw"])
def test_snp_evidence_verified_and_refused_only_for_the_binding(env: Env, layout: str) -> None:
    raw = _snp_env(env)
    if layout == "raw":
        evidence: Any = {"attestation_report": base64.b64encode(raw).decode(), "cert_chain": None}
    else:
        evidence = sev_evidence(raw, layout)
    r = _snp_attest(env, evidence)
    _is_error(r, 401, "AttestationFailed")
    assert "runtime-data" in r.json()["detail"]
    entry = _last_attest(env)
    assert [x["code"] for x in entry["details"]["reasons"]] == ["binding_mismatch"]
    assert entry["details"]["evidence_sha256"] == hashlib.sha256(raw).hexdigest()
    assert entry["subject"] == SNP_CASES[0]["claims"]["measurement"]


@pytest.mark.skipif(not SNP_CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_snp_sev_crate_evidence_changed_or_malformed_is_refused(env: Env) -> None:
    raw = _snp_env(env)
    bad = sev_evidence(raw, "sev7")
    bad["attestation_report"]["measurement"][0] ^= 1
    r = _snp_attest(env, bad)
    _is_error(r, 401, "AttestationFailed")
    assert "signature does not verify" in r.json()["detail"]
    assert [x["code"] for x in _last_attest(env)["details"]["reasons"]] == ["signature_invalid"]
    bad = sev_evidence(raw, "sev7")
    bad["attestation_report"]["guest_svn"] = "0"
    r = _snp_attest(env, bad)
    _is_error(r, 400, "InvalidRequest")
    assert "tee-evidence.attestation_report.guest_svn" in r.json()["detail"]
    r = _snp_attest(env, {**sev_evidence(raw, "sev6"), "svsm_manifest": "AAAA"})
    _is_error(r, 400, "InvalidRequest")
    assert "SVSM" in r.json()["detail"]


@pytest.mark.skipif(not SNP_CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_snp_cert_chain_sent_with_the_evidence_is_used_as_collateral(env: Env) -> None:
    """As Trustee's attester sends it: the VCEK in ``cert_chain``, none in the domain's folder.

    The chain is still checked up to AMD's root: a VCEK of another chip, or none, is refused.
    """
    raw = _snp_env(env)
    vcek = next(p for p in SNP_CASES[0]["collateral"] if p.endswith("vcek.der"))
    (env.domain.collateral_dir / Path(vcek).name).unlink()  # before the service reads the folder
    vcek_der = (TESTVECTORS / vcek).read_bytes()

    r = _snp_attest(env, sev_evidence(raw, "sev6"))
    _is_error(r, 401, "AttestationFailed")
    assert "binding_mismatch" not in [x["code"] for x in _last_attest(env)["details"]["reasons"]]

    chain = [{"cert_type": "VCEK", "data": list(vcek_der)}]
    for layout in ("sev6", "raw"):
        evidence = (
            sev_evidence(raw, layout, cert_chain=chain) if layout != "raw"
            else {"attestation_report": base64.b64encode(raw).decode(), "cert_chain": chain}
        )
        r = _snp_attest(env, evidence)
        _is_error(r, 401, "AttestationFailed")
        assert [x["code"] for x in _last_attest(env)["details"]["reasons"]] == ["binding_mismatch"]

    # A certificate that is not this chip's VCEK (here: its ASK, named VCEK) does not verify it.
    ask_pem = (TESTVECTORS / SNP_CASES[0]["collateral"][1]).read_bytes()
    ask_der = x509.load_pem_x509_certificates(ask_pem)[0].public_bytes(serialization.Encoding.DER)
    r = _snp_attest(env, sev_evidence(raw, "sev6", cert_chain=[{"cert_type": "VCEK", "data": list(ask_der)}]))
    _is_error(r, 401, "AttestationFailed")
    assert "binding_mismatch" not in [x["code"] for x in _last_attest(env)["details"]["reasons"]]
    # A cert_chain entry that is not a certificate is refused as malformed collateral.
    r = _snp_attest(env, sev_evidence(raw, "sev6", cert_chain=[{"cert_type": "VCEK", "data": [1, 2, 3]}]))
    assert r.status_code in (400, 401), r.text


def test_each_step_may_be_served_by_another_worker(env: Env) -> None:
    """The session lives in its cookie: /auth, /attest and /resource on three different app
    instances (as uvicorn workers or replicas of one domain and database are)."""
    _setup(env)
    settings = Settings(data_dir=env.domain.path, database_url=env.db_url, policy_cache_seconds=0)
    with TestClient(create_app(settings)) as b, TestClient(create_app(settings)) as c:
        sk = ec.generate_private_key(ec.SECP256R1())
        challenge = _auth(env.client)
        b.cookies.update(env.client.cookies)
        r = b.post("/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk)))
        assert r.status_code == 200, r.text
        c.cookies.update(b.cookies)
        r = c.get("/kbs/v0/resource/default/key/image")
        assert r.status_code == 200, r.text
        assert _decrypt_ec(r.json(), sk) == SECRET
        # The challenge cookie was used up on b: replaying it on c is refused.
        c.cookies.clear()
        c.cookies.update(env.client.cookies)
        r = c.post("/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk)))
        assert r.status_code == 401 and "nonce" in r.json()["detail"]


def test_forged_garbled_and_oversized_session_cookies_are_no_session(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    good = env.client.cookies["kbs-session-id"]
    kind, body, tag = good.split(".")
    assert kind == "c"
    tee, alg, nonce = json.loads(_b64ud(body))
    other_tee = _b64u(json.dumps(["snp", alg, nonce]).encode())
    other_alg = _b64u(json.dumps([tee, "sha256", nonce]).encode())
    flipped = _b64u(bytes([_b64ud(tag)[0] ^ 1]) + _b64ud(tag)[1:])
    bad = [
        f"c.{other_tee}.{tag}",  # another tee under the same tag
        f"c.{other_alg}.{tag}",  # a weaker hash algorithm
        f"c.{body}.{flipped}",
        f"c.{body}",
        "c.!!!.!!!",
        f"c.{_b64u(b'[1,2')}.{tag}",
        "x." + body,
        "t.eyJhbGciOiJFUzI1NiJ9.e30.AAAA",  # not a token of this domain
        "c." + "A" * 20_000,
        "",
    ]
    for value in bad:
        fresh = TestClient(env.client.app)
        fresh.cookies.set("kbs-session-id", value)
        r = fresh.post("/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk)))
        assert r.status_code == 401, (value[:40], r.text)
        assert r.json()["detail"].startswith("no KBS challenge session"), value[:40]
        r = fresh.get("/kbs/v0/resource/default/key/image")
        assert r.status_code == 401, value[:40]
    # The untouched cookie still works.
    r = env.client.post("/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk)))
    assert r.status_code == 200, r.text
    # An attested (token) cookie is not a challenge session: /attest again needs /auth.
    r = env.client.post("/kbs/v0/attest", json=_attestation(env, challenge, _ec_jwk(sk)))
    assert r.status_code == 401


def test_attested_session_cookie_is_compact_and_tamper_evident(env: Env) -> None:
    """After /attest the cookie holds the attested session: small enough for any cookie store
    with real SNP claims, and useless once changed or expired."""
    import datetime as dt

    from veritee.service.routes_kbs import _attested_cookie, _Session, _session_from_cookie

    ctx = env.client.app.state.ctx  # type: ignore[attr-defined]
    claims: dict[str, Any] = {"platform": "sev-snp", "measurement": "ab" * 48}
    if SNP_CASES:
        from veritee import evidence
        from veritee.collateral import Collateral

        case = SNP_CASES[0]
        col = Collateral.from_paths([TESTVECTORS / p for p in case["collateral"]])
        at = dt.datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))
        claims = evidence.verify((TESTVECTORS / case["evidence"]).read_bytes(), collateral=col,
                                 at=at, format="sev-snp").claims  # fmt: skip
    jwk = _rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    session = _Session(tee="snp", nonce=b"", hash_algorithm="", claims=claims, tee_pubkey=jwk,
                       tee_alg="RSA-OAEP", evidence_sha256="ab" * 32)  # fmt: skip
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    cookie = _attested_cookie(ctx, session, later)
    assert len(f"kbs-session-id={cookie}") < 4096
    back = _session_from_cookie(ctx, cookie)
    assert back is not None and back.claims == claims and back.tee_pubkey == jwk
    kind, body, tag = cookie.split(".")
    raw = bytearray(_b64ud(body))
    raw[len(raw) // 2] ^= 1
    assert _session_from_cookie(ctx, f"{kind}.{_b64u(bytes(raw))}.{tag}") is None
    assert _session_from_cookie(ctx, f"c.{body}.{tag}") is None  # another kind, same tag
    expired = _attested_cookie(ctx, session, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert _session_from_cookie(ctx, expired) is None
