"""The freshness counter the service keeps per key store: POST /v1/keystores/counter (issue 13.1).

Only the holder of the store's current certified key reads or increments it, with a fresh nonce,
and the answer is signed by the key broker.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.service.conftest import Env

from veritee.binding import KeyStoreProof, report_data_for, spki_der
from veritee.keybroker.freshness import counter_answer_message, counter_request_message
from veritee.keybroker.release import verify_broker_certificate


def _certify(env: Env, key: ec.EllipticCurvePrivateKey, proof: KeyStoreProof) -> str:
    nonce = env.nonce()
    rd = report_data_for(
        nonce, spki_der(key.public_key()), profile=env.platform.profile, key_store=proof
    )
    r = env.client.post("/v1/certify", json={
        "evidence": base64.b64encode(env.platform.evidence(rd)).decode(), "nonce": nonce.hex(),
        "format": "simulated", "key_store": proof.to_json(),
        "public_key": key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()})  # fmt: skip
    assert r.status_code == 200, r.text
    return str(r.json()["certificate"])


def _body(env: Env, key: ec.EllipticCurvePrivateKey, cert: str, proof: KeyStoreProof, op: str,
          nonce: bytes | None = None) -> dict[str, Any]:  # fmt: skip
    nonce = nonce or env.nonce()
    sig = key.sign(
        counter_request_message(op, proof.store_id, proof.generation, nonce),
        ec.ECDSA(hashes.SHA256()),
    )
    return {"certificate": cert, "key_store": proof.to_json(), "op": op, "nonce": nonce.hex(),
            "signature": base64.b64encode(sig).decode()}  # fmt: skip


def _counter(env: Env, body: dict[str, Any]) -> Any:
    return env.client.post("/v1/keystores/counter", json=body)


def test_read_and_increment_with_signed_answers(env: Env) -> None:
    env.install_policy()
    key, proof = ec.generate_private_key(ec.SECP256R1()), KeyStoreProof(os.urandom(16), 1)
    cert = _certify(env, key, proof)
    values = []
    for op in ("read", "increment", "increment", "read"):
        nonce = env.nonce()
        r = _counter(env, _body(env, key, cert, proof, op, nonce))
        assert r.status_code == 200, r.text
        a = r.json()
        broker = verify_broker_certificate(
            a["signer"], env.domain.ca_certificate, at=dt.datetime.now(dt.UTC)
        )
        broker.verify(base64.b64decode(a["signature"]), counter_answer_message(op, proof.store_id, a["counter"], nonce),
                      ec.ECDSA(hashes.SHA256()))  # fmt: skip
        assert a["key_store"] == proof.store_id.hex() and a["op"] == op
        values.append(a["counter"])
    assert values == [0, 1, 2, 2]


def test_only_the_current_certified_key_uses_the_counter(env: Env) -> None:
    env.install_policy()
    store = os.urandom(16)
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    p1, p2 = KeyStoreProof(store, 1), KeyStoreProof(store, 2)
    c1 = _certify(env, k1, p1)
    assert _counter(env, _body(env, k1, c1, p1, "increment")).json()["counter"] == 1
    c2 = _certify(env, k2, p2)
    # The rolled-back store's key (generation 1) may no longer read or move the counter.
    r = _counter(env, _body(env, k1, c1, p1, "read"))
    assert r.status_code == 403 and r.json()["code"] == "key_superseded"
    r = _counter(env, _body(env, k1, c1, p2, "read"))  # claiming the new generation
    assert r.status_code == 403 and r.json()["code"] == "key_superseded"
    assert _counter(env, _body(env, k2, c2, p2, "read")).json()["counter"] == 1
    # A proof by another key than the certificate's.
    r = _counter(env, _body(env, k1, c2, p2, "read"))
    assert r.status_code == 403 and r.json()["code"] == "possession_not_proven"
    # A store never certified with its id.
    p3 = KeyStoreProof(os.urandom(16), 1)
    r = _counter(env, _body(env, k2, c2, p3, "read"))
    assert r.status_code == 404 and r.json()["code"] == "key_store_unknown"


def test_each_request_needs_a_fresh_nonce(env: Env) -> None:
    env.install_policy()
    key, proof = ec.generate_private_key(ec.SECP256R1()), KeyStoreProof(os.urandom(16), 1)
    cert = _certify(env, key, proof)
    body = _body(env, key, cert, proof, "increment")
    assert _counter(env, body).status_code == 200
    r = _counter(env, body)
    assert r.status_code == 409 and r.json()["code"] == "nonce_reused"
    assert _counter(env, _body(env, key, cert, proof, "read")).json()["counter"] == 1


@pytest.mark.parametrize(
    "change",
    [{"op": "reset"}, {"op": 3}, {"key_store": {"id": "11", "generation": 1}}, {"key_store": []},
     {"signature": "***"}, {"nonce": "zz"}, {"certificate": "not pem"}, {"extra": 1},
     {"certificate": "x" * 9000}],
)  # fmt: skip
def test_malformed_requests_are_400(env: Env, change: dict[str, Any]) -> None:
    env.install_policy()
    key, proof = ec.generate_private_key(ec.SECP256R1()), KeyStoreProof(os.urandom(16), 1)
    cert = _certify(env, key, proof)
    r = _counter(env, {**_body(env, key, cert, proof, "read"), **change})
    assert r.status_code == 400, r.text


def test_a_revoked_certificate_does_not_use_the_counter(env: Env) -> None:
    """Issue 12.2: a revoked admission certificate is refused here too, at once."""
    env.install_policy()
    key, proof = ec.generate_private_key(ec.SECP256R1()), KeyStoreProof(os.urandom(16), 1)
    cert = _certify(env, key, proof)
    assert _counter(env, _body(env, key, cert, proof, "increment")).status_code == 200
    from cryptography import x509

    serial = format(x509.load_pem_x509_certificate(cert.encode()).serial_number, "x")
    r = env.client.post("/v1/admin/revocations", json={"serial": serial}, headers=env.admin)
    assert r.status_code == 200, r.text
    r = _counter(env, _body(env, key, cert, proof, "read"))
    assert r.status_code == 403 and r.json()["code"] == "certificate_revoked", r.text
