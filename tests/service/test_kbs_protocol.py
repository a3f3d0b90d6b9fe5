"""Trustee KBS protocol 0.4.0 in-process, spoken as guest-components' kbs_protocol client speaks
it (tests/kbs_guest.py), with Trustee's status codes and error type names (kbs/src/error.rs)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from tests.conftest import TESTVECTORS, manifest_cases
from tests.kbs_guest import (
    TEE_PUBKEY_PATH_EAR,
    attestation,
    b64u,
    guest_decrypt,
    pointer,
    request,
    tee_jwk,
    token_claims,
)
from tests.service.conftest import OTHER, Env, default_policy, spy_loop_transactions
from tests.sev_crate_json import LAYOUTS, sev_evidence

from veritee.service.app import create_app
from veritee.service.settings import Settings
from veritee.tokens import decode_ear

SECRET = b"-----BEGIN KEY----- guest image key -----END KEY-----"
PREFIX = "https://github.com/confidential-containers/kbs/errors/"
RESOURCE = "/kbs/v0/resource/default/key/image"


def _setup(env: Env, measurement: str | None = None) -> None:
    env.install_policy()
    policy = {
        "allOf": [{"claim": "measurement", "equals": measurement or env.platform.measurement}]
    }
    body = {"value": base64.b64encode(SECRET).decode(), "policy": policy}
    r = env.client.put("/v1/admin/secrets/default/key/image", json=body, headers=env.admin)
    assert r.status_code == 200, r.text


def _auth(client: TestClient, version: str = "0.4.0") -> dict[str, Any]:
    r = client.post("/kbs/v0/auth", json=request(version=version))
    assert r.status_code == 200, r.text
    assert "kbs-session-id" in r.cookies
    return dict(r.json())


def _attest(
    env: Env, sk: Any, platform: Any = None, client: TestClient | None = None, **kw: Any
) -> Any:
    client = client or env.client
    challenge = _auth(client)
    body = attestation((platform or env.platform).evidence, challenge, tee_jwk(sk), **kw)
    return client.post("/kbs/v0/attest", json=body)


def _is_error(r: Any, status: int, problem: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == PREFIX + problem and r.json()["detail"], r.text


def _audit(env: Env) -> list[dict[str, Any]]:
    return list(env.client.get("/v1/admin/audit?limit=1000", headers=env.admin).json()["entries"])


def test_rcar_flow_ec_key_cookie_and_token(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    r = _attest(env, sk)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    r = env.client.get(RESOURCE)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    assert guest_decrypt(r.json(), sk) == SECRET
    # the token works without the cookie (another replica, a later request)
    fresh = TestClient(env.client.app)
    r = fresh.get(RESOURCE, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and guest_decrypt(r.json(), sk) == SECRET
    entries = _audit(env)
    rel = [e for e in entries if e["kind"] == "secret.release"]
    assert len(rel) == 2 and all(e["details"]["via"] == "kbs" for e in rel)
    assert any(e["kind"] == "kbs.attest" and e["decision"] == "accept" for e in entries)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP521R1()], ids=["P-256", "P-521"])
def test_guest_decrypts_resources_from_the_reserialized_header(
    env: Env, curve: ec.EllipticCurve
) -> None:
    """Issue 12 items 5 and 6: the guest rebuilds the AAD from the decoded header (serde_json
    map order: ``epk`` as ``crv, kty, x, y``), and its tee-pubkey may be P-521."""
    _setup(env)
    sk = ec.generate_private_key(curve)
    assert _attest(env, sk).status_code == 200
    r = env.client.get(RESOURCE)
    assert r.status_code == 200, r.text
    header = json.loads(base64.urlsafe_b64decode(r.json()["protected"] + "=="))
    assert list(header) == ["alg", "enc", "epk"] and list(header["epk"]) == ["crv", "kty", "x", "y"]
    assert guest_decrypt(r.json(), sk) == SECRET


def test_rsa_oaep_256_tee_key(env: Env) -> None:
    _setup(env)
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _attest(env, sk).status_code == 200
    r = env.client.get(RESOURCE)
    assert r.status_code == 200 and guest_decrypt(r.json(), sk) == SECRET


def test_token_is_an_ear_in_trustees_layout(env: Env) -> None:
    """Issue 12 item 9 / issue 13 item 6: the TEE key where Trustee's token verifier looks for it
    (``/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey``), and an
    EAR like the service's other tokens: typ, iss, aud (the KBS's own), cnf, status."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    r = _attest(env, sk)
    token = r.json()["token"]
    claims = token_claims(token)
    assert pointer(claims, TEE_PUBKEY_PATH_EAR) == tee_jwk(sk)
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.status"] in ("affirming", "warning")
    evidence = cpu0["ear.veraison.annotated-evidence"]
    assert evidence["measurement"] == env.platform.measurement
    assert (
        evidence["runtime_data_claims"]["nonce"]
        and "additional-evidence" not in evidence["runtime_data_claims"]
    )
    ear = decode_ear(token, env.domain.token_key.public_key(), issuer="veritee", audience="veritee/kbs",
                     holder_key=tee_jwk(sk))  # fmt: skip
    assert ear["exp"] - ear["iat"] == 300 and ear["eat_nonce"]
    assert claims["cnf"]["jwk"] == tee_jwk(sk)


def test_second_attest_returns_the_sessions_token(env: Env) -> None:
    """Issue 12 item 7: Trustee answers /attest on an attested session with its token."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    body = attestation(env.platform.evidence, challenge, tee_jwk(sk))
    first = env.client.post("/kbs/v0/attest", json=body)
    assert first.status_code == 200, first.text
    cookie = env.client.cookies["kbs-session-id"]
    again = env.client.post("/kbs/v0/attest", json=body)
    assert again.status_code == 200, again.text
    assert again.json()["token"] == first.json()["token"]
    assert env.client.cookies["kbs-session-id"] == cookie
    # Another worker of the same domain and database answers the same.
    settings = Settings(data_dir=env.domain.path, database_url=env.db_url, policy_cache_seconds=0)
    with TestClient(create_app(settings)) as other:
        other.cookies.set("kbs-session-id", cookie)
        r = other.post("/kbs/v0/attest", json=body)
        assert r.status_code == 200 and r.json()["token"] == first.json()["token"]
    # Only one attestation was appraised and recorded.
    assert [e["decision"] for e in _audit(env) if e["kind"] == "kbs.attest"] == ["accept"]
    # Once the session has expired, the cookie is no session at all.
    ctx = env.client.app.state.ctx  # type: ignore[attr-defined]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    ctx.now = lambda: later
    _is_error(env.client.post("/kbs/v0/attest", json=body), 401, "AttestationError")
    _is_error(env.client.get(RESOURCE), 401, "TokenNotFound")


@pytest.mark.parametrize("additional", ["", '{"sampledevice":{"svn":"1"}}'])
def test_composite_evidence_of_protocol_0_4(env: Env, additional: str) -> None:
    """Today's guest components: tee-evidence = {primary_evidence, additional_evidence}; a
    device's evidence is appraised, never only bound: unsigned sample devices are refused."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    r = _attest(env, sk, additional=additional)
    if not additional:
        assert r.status_code == 200, r.text
        return
    _is_error(r, 401, "AttestationError")
    assert "sample device" in r.json()["detail"]
    attest = [e for e in _audit(env) if e["kind"] == "kbs.attest"][-1]
    assert attest["decision"] == "reject"
    assert [x["code"] for x in attest["details"]["reasons"]] == ["evidence_unsigned"]


def test_composite_evidence_whose_devices_are_swapped_is_refused(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    r = _attest(env, sk, additional='{"nvidia":{"device_evidence_list":[]}}',
                bind_additional='{"nvidia":{}}')  # fmt: skip
    _is_error(r, 401, "AttestationError")
    for primary in (5, None, "not json", {"evidence": "***"}, {}):
        challenge = _auth(env.client)
        body = attestation(env.platform.evidence, challenge, tee_jwk(sk))
        body["tee-evidence"]["primary_evidence"] = primary
        r = env.client.post("/kbs/v0/attest", json=body)
        _is_error(r, 401, "AttestationError")


GPU = TESTVECTORS / "nvidia-gpu"


def _gpu_additional(i: int = 0) -> str:
    report, chain = [("nvtrust_hopperAttestationReport.txt", "nvtrust_hopperCertChain.pem"),
                     ("trustee_hopper_coco_report1.txt", "trustee_hopper_coco_certs1.pem")][i]  # fmt: skip
    entry = {"arch": "HOPPER", "uuid": "GPU-1", "evidence": (GPU / report).read_text().strip(),
             "certificate": base64.b64encode((GPU / chain).read_bytes()).decode()}  # fmt: skip
    return json.dumps({"nvidia": {"device_evidence_list": [entry]}})


@pytest.mark.skipif(not (GPU / "nvtrust_hopperAttestationReport.txt").is_file(),
                    reason="test vectors absent (../shared/testvectors)")  # fmt: skip
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_gpu_evidence_is_verified_and_appraised_against_the_policy(env: Env) -> None:
    """Issue 12 item 8: additional (device) evidence is appraised, not only bound. A real H100
    report cannot bind this session, so with its measurement pinned by the policy the only
    refusal left is the device binding; without an nvidia-gpu section the policy refuses it too."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    additional = _gpu_additional()
    r = _attest(env, sk, additional=additional)
    _is_error(r, 401, "AttestationError")
    device = [e for e in _audit(env) if e["kind"] == "kbs.attest"][-1]["details"]["devices"][0]
    codes = {x["code"] for x in device["reasons"]}
    assert device["platform"] == "nvidia-gpu" and "device_binding_mismatch" in codes
    assert len(codes) > 1  # the policy has no nvidia-gpu section: refused by policy as well
    doc = default_policy(env.platform)
    doc["platforms"]["nvidia-gpu"] = {"measurements": [device["measurement"]]}
    env.install_policy(doc)
    r = _attest(env, sk, additional=additional)
    _is_error(r, 401, "AttestationError")
    entry = [e for e in _audit(env) if e["kind"] == "kbs.attest"][-1]
    assert [x["code"] for x in entry["details"]["devices"][0]["reasons"]] == [
        "device_binding_mismatch"
    ]
    assert entry["details"]["reasons"] == []  # the primary evidence itself was fine


INIT_DATA = 'algorithm = "sha384"\nversion = "0.1.0"\n\n[data]\n"aa.toml" = \'\'\'\n[token_configs.kbs]\nurl = "https://kbs"\n\'\'\'\n'


def test_init_data_that_the_evidence_does_not_bind_is_refused(env: Env) -> None:
    """Issue 12 item 8: init-data is checked against what the evidence binds; the simulated
    platform binds none, so init-data sent with its evidence is refused (it was accepted)."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    r = _attest(env, sk, init_data=INIT_DATA)
    _is_error(r, 401, "AttestationError")
    assert "init-data" in r.json()["detail"]
    entry = [e for e in _audit(env) if e["kind"] == "kbs.attest"][-1]
    assert [x["code"] for x in entry["details"]["reasons"]] == ["init_data_unbound"]
    assert entry["details"]["init_data"] == {
        "algorithm": "sha384",
        "digest": hashlib.sha384(INIT_DATA.encode()).hexdigest(),
        "bound": False,
    }
    for bad in (
        {"format": "json", "body": "{}"},
        {"format": "toml", "body": "= nope"},
        {"body": ""},
        5,
    ):
        challenge = _auth(env.client)
        body = attestation(env.platform.evidence, challenge, tee_jwk(sk))
        body["init-data"] = bad
        _is_error(env.client.post("/kbs/v0/attest", json=body), 401, "AttestationError")


def test_trustee_status_codes_and_error_types(env: Env) -> None:
    """Issue 12 item 7: 401 for every error but a bad path or an unknown plugin (404), with
    Trustee's type names."""
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    _is_error(env.client.get(RESOURCE), 401, "TokenNotFound")
    _is_error(env.client.post("/kbs/v0/attest", json={}), 401, "AttestationError")
    for version in ("0.1.0", "0.3.0", "1.0.0", "0.4.0-rc1", "x"):
        _is_error(
            env.client.post("/kbs/v0/auth", json=request(version=version)), 401, "AttestationError"
        )
    assert env.client.post("/kbs/v0/auth", json=request(version="0.4.0+build")).status_code == 200
    _is_error(env.client.post("/kbs/v0/auth", json=request(tee="se")), 401, "AttestationError")
    # evidence bound to another key; then a replay of the used challenge
    challenge = _auth(env.client)
    other = tee_jwk(ec.generate_private_key(ec.SECP256R1()))
    body = attestation(env.platform.evidence, challenge, tee_jwk(sk), bind_jwk=other)
    r = env.client.post("/kbs/v0/attest", json=body)
    _is_error(r, 401, "AttestationError")
    assert "runtime-data" in r.json()["detail"]
    body = attestation(env.platform.evidence, challenge, tee_jwk(sk))
    r = env.client.post("/kbs/v0/attest", json=body)
    _is_error(r, 401, "AttestationError")
    assert "nonce" in r.json()["detail"]
    # unsigned Trustee sample evidence
    challenge = _auth(env.client)
    sample = {"runtime-data": {"tee-pubkey": tee_jwk(sk), "nonce": challenge["nonce"]},
              "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": "AAAA"},
                               "additional_evidence": ""}}  # fmt: skip
    _is_error(env.client.post("/kbs/v0/attest", json=sample), 401, "AttestationError")
    # a good session, then an unknown resource, bad paths, unknown plugins, writes, bad tokens
    assert _attest(env, sk).status_code == 200
    _is_error(env.client.get("/kbs/v0/resource/default/key/none"), 401, "PluginInternalError")
    for path in ("/kbs/v0/resource/default/key", "/kbs/v0/resource/a/b/c/d", "/kbs/v0/resource/a/b/.c",
                 "/kbs/v0/resource/a/b/c%20d"):  # fmt: skip
        _is_error(env.client.get(path), 404, "InvalidRequestPath")
    for method, path in (("GET", "/kbs/v0/nebula-ca/credential"), ("GET", "/kbs/v0/auth"),
                         ("POST", "/kbs/v0/"), ("DELETE", "/kbs/v0/attest")):  # fmt: skip
        _is_error(env.client.request(method, path), 404, "PluginNotFound")
    for method, path in (
        ("POST", RESOURCE),
        ("DELETE", RESOURCE),
        ("POST", "/kbs/v0/resource-policy"),
    ):
        _is_error(env.client.request(method, path, content=b"x"), 401, "AdminAuthAccess")
    fresh = TestClient(env.client.app)
    for header in ("Bearer x.y.z", "Bearer " + "a" * 50):
        _is_error(fresh.get(RESOURCE, headers={"Authorization": header}), 401, "TokenVerifierError")
    _is_error(fresh.get(RESOURCE, headers={"Authorization": "Basic abc"}), 401, "TokenNotFound")
    # a token of this domain for another audience (/v1/attest) opens no KBS resource
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
    from veritee.binding import spki_der

    attest = env.attest_body(spki=spki_der(key.public_key())) | {"public_key": pem}
    v1 = env.client.post("/v1/attest", json=attest).json()["token"]
    _is_error(
        fresh.get(RESOURCE, headers={"Authorization": f"Bearer {v1}"}), 401, "TokenVerifierError"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": ' + b"1" * 5000 + b', "tee": "sample"}',
        b'{"version": "0.4.0", "tee": "sample", "extra-params": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        b"\xff\xfe",
        b"",
    ],
    ids=["nested", "long-int", "nested-params", "not-utf8", "empty"],
)
def test_hostile_bodies_are_401_not_500(env: Env, body: bytes) -> None:
    """Issue 12 item 10: deeply nested JSON or integers of thousands of digits."""
    _is_error(env.client.post("/kbs/v0/auth", content=body), 401, "AttestationError")
    _auth(env.client)
    _is_error(env.client.post("/kbs/v0/attest", content=body), 401, "AttestationError")


def test_policy_deny_is_401_and_audited(env: Env) -> None:
    doc = default_policy(env.platform)
    doc["platforms"]["simulated"]["measurements"] = [env.platform.measurement, OTHER]
    env.install_policy(doc)
    policy = {"allOf": [{"claim": "measurement", "equals": env.platform.measurement}]}
    body = {"value": base64.b64encode(SECRET).decode(), "policy": policy}
    env.client.put("/v1/admin/secrets/default/key/image", json=body, headers=env.admin)
    sk = ec.generate_private_key(ec.SECP256R1())
    assert _attest(env, sk, platform=env.workload(OTHER)).status_code == 200
    r = env.client.get(RESOURCE)
    _is_error(r, 401, "PolicyDeny")
    assert "measurement" in r.json()["detail"]
    entries = _audit(env)
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


def _snp_attest(env: Env, evidence: Any, init_data: str | None = None) -> Any:
    r = env.client.post("/kbs/v0/auth", json=request(tee="snp"))
    assert r.status_code == 200, r.text
    jwk = tee_jwk(ec.generate_private_key(ec.SECP256R1()))
    body = {"runtime-data": {"tee-pubkey": jwk, "nonce": r.json()["nonce"]},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
            "init-data": None if init_data is None else {"format": "toml", "body": init_data}}  # fmt: skip
    return env.client.post("/kbs/v0/attest", json=body)


def _last_attest(env: Env) -> dict[str, Any]:
    return dict(next(e for e in reversed(_audit(env)) if e["kind"] == "kbs.attest"))


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
    _is_error(r, 401, "AttestationError")
    assert "runtime-data" in r.json()["detail"]
    entry = _last_attest(env)
    assert [x["code"] for x in entry["details"]["reasons"]] == ["binding_mismatch"]
    assert entry["details"]["evidence_sha256"] == hashlib.sha256(raw).hexdigest()
    assert entry["subject"] == SNP_CASES[0]["claims"]["measurement"]


@pytest.mark.skipif(not SNP_CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_snp_init_data_is_checked_against_hostdata(env: Env) -> None:
    """The report's HOSTDATA is not this init-data's digest: refused for it as well."""
    raw = _snp_env(env)
    r = _snp_attest(env, sev_evidence(raw, "sev6"), init_data=INIT_DATA)
    _is_error(r, 401, "AttestationError")
    codes = [x["code"] for x in _last_attest(env)["details"]["reasons"]]
    assert codes == ["binding_mismatch", "init_data_mismatch"]


@pytest.mark.skipif(not SNP_CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_snp_sev_crate_evidence_changed_or_malformed_is_refused(env: Env) -> None:
    raw = _snp_env(env)
    bad = sev_evidence(raw, "sev7")
    bad["attestation_report"]["measurement"][0] ^= 1
    r = _snp_attest(env, bad)
    _is_error(r, 401, "AttestationError")
    assert "signature does not verify" in r.json()["detail"]
    assert [x["code"] for x in _last_attest(env)["details"]["reasons"]] == ["signature_invalid"]
    bad = sev_evidence(raw, "sev7")
    bad["attestation_report"]["guest_svn"] = "0"
    r = _snp_attest(env, bad)
    _is_error(r, 401, "AttestationError")
    assert "tee-evidence.attestation_report.guest_svn" in r.json()["detail"]
    r = _snp_attest(env, {**sev_evidence(raw, "sev6"), "svsm_manifest": "AAAA"})
    _is_error(r, 401, "AttestationError")
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
    _is_error(r, 401, "AttestationError")
    assert "binding_mismatch" not in [x["code"] for x in _last_attest(env)["details"]["reasons"]]

    chain = [{"cert_type": "VCEK", "data": list(vcek_der)}]
    for layout in ("sev6", "raw"):
        evidence = (
            sev_evidence(raw, layout, cert_chain=chain)
            if layout != "raw"
            else {"attestation_report": base64.b64encode(raw).decode(), "cert_chain": chain}
        )
        r = _snp_attest(env, evidence)
        _is_error(r, 401, "AttestationError")
        assert [x["code"] for x in _last_attest(env)["details"]["reasons"]] == ["binding_mismatch"]

    # A certificate that is not this chip's VCEK (here: its ASK, named VCEK) does not verify it.
    ask_pem = (TESTVECTORS / SNP_CASES[0]["collateral"][1]).read_bytes()
    ask_der = x509.load_pem_x509_certificates(ask_pem)[0].public_bytes(serialization.Encoding.DER)
    r = _snp_attest(
        env, sev_evidence(raw, "sev6", cert_chain=[{"cert_type": "VCEK", "data": list(ask_der)}])
    )
    _is_error(r, 401, "AttestationError")
    assert "binding_mismatch" not in [x["code"] for x in _last_attest(env)["details"]["reasons"]]
    # A cert_chain entry that is not a certificate is refused as malformed collateral.
    r = _snp_attest(
        env, sev_evidence(raw, "sev6", cert_chain=[{"cert_type": "VCEK", "data": [1, 2, 3]}])
    )
    _is_error(r, 401, "AttestationError")


def test_each_step_may_be_served_by_another_worker(env: Env) -> None:
    """/auth, /attest and /resource on three different app instances (as uvicorn workers or
    replicas of one domain and database are): the challenge travels in its cookie, the
    attested session in the database."""
    _setup(env)
    settings = Settings(data_dir=env.domain.path, database_url=env.db_url, policy_cache_seconds=0)
    with TestClient(create_app(settings)) as b, TestClient(create_app(settings)) as c:
        sk = ec.generate_private_key(ec.SECP256R1())
        challenge = _auth(env.client)
        b.cookies.update(env.client.cookies)
        r = b.post(
            "/kbs/v0/attest", json=attestation(env.platform.evidence, challenge, tee_jwk(sk))
        )
        assert r.status_code == 200, r.text
        c.cookies.update(b.cookies)
        r = c.get(RESOURCE)
        assert r.status_code == 200, r.text
        assert guest_decrypt(r.json(), sk) == SECRET
        # The challenge cookie was used up on b: replaying it on c is refused.
        c.cookies.clear()
        c.cookies.update(env.client.cookies)
        r = c.post(
            "/kbs/v0/attest", json=attestation(env.platform.evidence, challenge, tee_jwk(sk))
        )
        assert r.status_code == 401 and "nonce" in r.json()["detail"]


def test_forged_garbled_and_oversized_session_cookies_are_no_session(env: Env) -> None:
    _setup(env)
    sk = ec.generate_private_key(ec.SECP256R1())
    challenge = _auth(env.client)
    good = env.client.cookies["kbs-session-id"]
    kind, body, tag = good.split(".")
    assert kind == "c"
    tee, alg, nonce = json.loads(base64.urlsafe_b64decode(body + "=="))
    other_tee = b64u(json.dumps(["snp", alg, nonce]).encode())
    other_alg = b64u(json.dumps([tee, "sha256", nonce]).encode())
    raw_tag = base64.urlsafe_b64decode(tag + "==")
    flipped = b64u(bytes([raw_tag[0] ^ 1]) + raw_tag[1:])
    bad = [
        f"c.{other_tee}.{tag}",  # another tee under the same tag
        f"c.{other_alg}.{tag}",  # a weaker hash algorithm
        f"c.{body}.{flipped}",
        f"c.{body}",
        "c.!!!.!!!",
        f"c.{b64u(b'[1,2')}.{tag}",
        f"a.{body}.{tag}",  # another kind under the same tag
        f"a.{b64u(bytes(32))}.{tag}",  # a session id this domain never issued
        "x." + body,
        "t.eyJhbGciOiJFUzI1NiJ9.e30.AAAA",  # not a cookie of this domain
        "c." + "A" * 20_000,
        "",
    ]
    body_json = attestation(env.platform.evidence, challenge, tee_jwk(sk))
    for value in bad:
        fresh = TestClient(env.client.app)
        fresh.cookies.set("kbs-session-id", value)
        r = fresh.post("/kbs/v0/attest", json=body_json)
        _is_error(r, 401, "AttestationError")
        assert "no KBS session" in r.json()["detail"], value[:40]
        _is_error(fresh.get(RESOURCE), 401, "TokenNotFound")
    # The untouched cookie still works.
    r = env.client.post("/kbs/v0/attest", json=body_json)
    assert r.status_code == 200, r.text


def test_attest_reads_the_database_off_the_event_loop(env: Env, monkeypatch: Any) -> None:
    """KBS /attest appraises on the event loop; what the appraisal needs from the database
    (the policies in force, the collateral generation, the reference values: read again at
    every request here, ``policy_cache_seconds=0``) is read in a database thread, so a slow
    database (PostgreSQL across a network) never stalls the worker's other requests."""
    _setup(env)
    on_loop = spy_loop_transactions(env.client.app.state.ctx, monkeypatch)  # type: ignore[attr-defined]
    sk = ec.generate_private_key(ec.SECP256R1())
    for _ in range(2):
        r = _attest(env, sk)
        assert r.status_code == 200, r.text
    assert on_loop and not any(on_loop), on_loop
