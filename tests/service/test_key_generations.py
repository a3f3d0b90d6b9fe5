"""Key-store generations and the report-data binding at the service (issue 13, items 1 and 3).

A workload proves its key store's id and key generation in the report data when it certifies a
key; the service refuses a generation lower than one it certified for that store (the host put
back an older key store), and accepts the version-1 binding only for development and testing.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.service.conftest import GOOD, Env

from veritee import oids
from veritee.binding import KeyStoreProof, report_data_for, report_data_v1, spki_der
from veritee.platforms.simulated import SimulatedPlatform
from veritee.profiles import Profile


def _certify(env: Env, key: ec.EllipticCurvePrivateKey, proof: KeyStoreProof | None, *,
             platform: SimulatedPlatform | None = None, sent: Any = None,
             v1: bool = False, omit: bool = False) -> Any:  # fmt: skip
    platform = platform or env.platform
    nonce = env.nonce()
    spki = spki_der(key.public_key())
    rd = (
        report_data_v1(nonce, spki)
        if v1
        else report_data_for(nonce, spki, profile=platform.profile, key_store=proof)
    )
    body: dict[str, Any] = {
        "evidence": base64.b64encode(platform.evidence(rd)).decode(),
        "nonce": nonce.hex(),
        "format": "simulated",
        "public_key": key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    }
    if omit:
        pass
    elif sent is not None:
        body["key_store"] = sent
    elif proof is not None:
        body["key_store"] = proof.to_json()
    return env.client.post("/v1/certify", json=body)


def _audit(env: Env) -> list[dict[str, Any]]:
    return list(env.client.get("/v1/admin/audit", headers=env.admin).json()["entries"])


def test_a_superseded_key_generation_is_refused(env: Env) -> None:
    env.install_policy()
    store = os.urandom(16)
    k1, k2, k3 = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    assert _certify(env, k1, KeyStoreProof(store, 1)).status_code == 200
    assert _certify(env, k2, KeyStoreProof(store, 2)).status_code == 200
    # The host put back the store of generation 1: its key is not certified again.
    r = _certify(env, k1, KeyStoreProof(store, 1))
    assert r.status_code == 403 and r.json()["code"] == "key_superseded", r.text
    last = _audit(env)[-1]
    assert last["kind"] == "certify" and last["decision"] == "reject"
    assert "key_superseded" in {x["code"] for x in last["details"]["reasons"]}
    # The same generation again (a renewal) and the next one are fine.
    assert _certify(env, k2, KeyStoreProof(store, 2)).status_code == 200
    assert _certify(env, k3, KeyStoreProof(store, 3)).status_code == 200
    assert _certify(env, k2, KeyStoreProof(store, 2)).status_code == 403
    # Other stores are not affected.
    assert _certify(env, k1, KeyStoreProof(os.urandom(16), 1)).status_code == 200


def test_the_refusal_uses_up_the_nonce(env: Env) -> None:
    env.install_policy()
    store = os.urandom(16)
    key = ec.generate_private_key(ec.SECP256R1())
    assert _certify(env, key, KeyStoreProof(store, 5)).status_code == 200
    nonce = env.nonce()
    spki = spki_der(key.public_key())
    proof = KeyStoreProof(store, 4)
    rd = report_data_for(nonce, spki, profile=env.platform.profile, key_store=proof)
    body = {"evidence": base64.b64encode(env.platform.evidence(rd)).decode(), "nonce": nonce.hex(),
            "format": "simulated", "key_store": proof.to_json(),
            "public_key": key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}  # fmt: skip
    assert env.client.post("/v1/certify", json=body).json()["code"] == "key_superseded"
    r = env.client.post("/v1/certify", json=body)
    assert r.status_code == 409 and r.json()["code"] == "nonce_reused"


def test_a_generation_changed_in_transit_breaks_the_binding(env: Env) -> None:
    """The host raises the generation in the request to get a superseded key certified: the
    report data, signed by the platform, still says the old one."""
    env.install_policy()
    store = os.urandom(16)
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    assert _certify(env, k1, KeyStoreProof(store, 1)).status_code == 200
    assert _certify(env, k2, KeyStoreProof(store, 2)).status_code == 200
    r = _certify(env, k1, KeyStoreProof(store, 1), sent={"id": store.hex(), "generation": 9})
    assert r.status_code == 403
    assert "binding_mismatch" in {x["code"] for x in r.json()["reasons"]}
    r = _certify(env, k1, KeyStoreProof(store, 1), omit=True)  # or leaves the proof out
    assert r.status_code == 403
    assert "binding_mismatch" in {x["code"] for x in r.json()["reasons"]}


@pytest.mark.parametrize(
    "sent",
    [[], "x", {"id": "11" * 16}, {"id": "11" * 16, "generation": 0},
     {"id": "1" * 31, "generation": 1}, {"id": "11" * 16, "generation": 2**64}],
)  # fmt: skip
def test_malformed_key_store_is_a_400(env: Env, sent: Any) -> None:
    env.install_policy()
    key = ec.generate_private_key(ec.SECP256R1())
    r = _certify(env, key, None, sent=sent)
    assert r.status_code == 400, r.text
    assert r.json()["code"] in ("malformed", "malformed_request")


def test_certificates_carry_the_attested_profile(env: Env) -> None:
    env.install_policy()
    prod = SimulatedPlatform(env.platform_dir, measurement=GOOD, profile=Profile.PRODUCTION)
    r = _certify(env, ec.generate_private_key(ec.SECP256R1()), KeyStoreProof(os.urandom(16), 1),
                 platform=prod)  # fmt: skip
    assert r.status_code == 200, r.text
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(r.json()["certificate"].encode())
    ext = cert.extensions.get_extension_for_oid(oids.PROFILE).value
    assert oids.decode_utf8_string(ext.value) == "production"  # type: ignore[attr-defined]


@pytest.mark.parametrize("profile", list(Profile))
def test_version_1_binding_during_the_transition(env: Env, profile: Profile) -> None:
    """Workloads of earlier SDKs (report data version 1) still certify in development and
    testing, with a warning; in staging and production they must update."""
    env.install_policy()
    platform = SimulatedPlatform(env.platform_dir, measurement=GOOD, profile=profile)
    r = _certify(env, ec.generate_private_key(ec.SECP256R1()), None, platform=platform, v1=True)
    if profile.allows_debug:
        assert r.status_code == 200, r.text
        assert "binding_v1_deprecated" in {w["code"] for w in r.json()["warnings"]}
    else:
        assert r.status_code == 403
        assert "binding_version_refused" in {x["code"] for x in r.json()["reasons"]}
