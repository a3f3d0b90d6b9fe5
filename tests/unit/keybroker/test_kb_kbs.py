"""Trustee KBS protocol messages, from the published protocol description and kbs-types."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import evidence
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.keybroker import kbs
from veritee.keybroker.kbs import (
    KbsAttestation,
    KbsChallenge,
    KbsRequest,
    check_runtime_binding,
    expected_report_data,
    extract_evidence,
    runtime_data_bytes,
    select_hash,
)
from veritee.keybroker.wrap import jwk_from_public_key
from veritee.platforms.simulated import SimulatedPlatform

MEAS = "5a" * 48


def test_public_surface() -> None:
    for name in kbs.__all__:
        assert hasattr(kbs, name), name


def test_request_parsing() -> None:
    r = KbsRequest.from_json(
        b'{"version":"0.4.0","tee":"tdx","extra-params":{"supported-hash-algorithms":["Sha256","Sha384"]}}'
    )
    assert r.tee == "tdx" and r.supported_hashes == ("sha256", "sha384")
    assert select_hash(r) == "sha384"
    old = KbsRequest.from_json({"version": "0.1.0", "tee": "snp", "extra-params": ""})
    assert old.extra_params == {} and select_hash(old) == "sha384"
    only256 = KbsRequest.from_json(
        {
            "version": "0.3.0",
            "tee": "sample",
            "extra-params": {"supported-hash-algorithms": ["sha256"]},
        }
    )
    assert select_hash(only256) == "sha256"
    with pytest.raises(UsageError) as e:
        KbsRequest.from_json({"version": "1.0.0", "tee": "tdx", "extra-params": {}})
    assert e.value.code == "protocol_version"
    with pytest.raises(UsageError) as e:
        KbsRequest.from_json({"version": "0.4.0", "tee": "se", "extra-params": {}})
    assert e.value.code == "tee_unsupported"
    with pytest.raises(MalformedError):
        KbsRequest.from_json(b"not json")
    with pytest.raises(MalformedError):
        KbsRequest.from_json({"version": 4, "tee": "tdx"})


def test_challenge_shape() -> None:
    c = KbsChallenge(nonce=KbsChallenge.encode_nonce(b"\x00" * 32), hash_algorithm="sha384")
    doc = c.to_json()
    assert set(doc) == {"nonce", "extra-params"}
    assert base64.b64decode(doc["nonce"]) == b"\x00" * 32
    assert doc["extra-params"]["selected-hash-algorithm"] == "sha384"


def _tee_key() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    sk = ec.generate_private_key(ec.SECP256R1())
    return sk, jwk_from_public_key(sk.public_key(), alg="ECDH-ES+A256KW")


def test_runtime_data_serialized_as_serde_json_value() -> None:
    # serde_json::to_string(&json!({...})) sorts object keys and writes no whitespace.
    runtime = {
        "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "A", "x": "X", "y": "Y"},
        "nonce": "n0",
    }
    assert runtime_data_bytes(runtime) == (
        b'{"nonce":"n0","tee-pubkey":{"alg":"A","crv":"P-256","kty":"EC","x":"X","y":"Y"}}'
    )
    rd = expected_report_data(runtime, "sha384")
    assert rd == hashlib.sha384(runtime_data_bytes(runtime)).digest() + b"\0" * 16


def _guest_attestation(
    tmp_path: Path,
    nonce: str,
    jwk: dict[str, Any],
    *,
    new_protocol: bool = True,
    alg: str = "sha384",
) -> dict[str, Any]:
    """What a guest sends, built as the protocol description says (not with veritee's helpers)."""
    runtime = {"tee-pubkey": jwk, "nonce": nonce}
    text = json.dumps(runtime, sort_keys=True, separators=(",", ":"))
    report_data = hashlib.new(alg, text.encode()).digest().ljust(64, b"\0")
    platform = SimulatedPlatform(tmp_path / "plat", measurement=MEAS)
    ev = {"evidence": base64.b64encode(platform.evidence(report_data)).decode()}
    if new_protocol:
        return {"runtime-data": runtime, "tee-evidence": ev}
    return {"tee-pubkey": jwk, "tee-evidence": json.dumps(ev)}


@pytest.mark.parametrize("new_protocol", [True, False])
def test_attestation_binding_end_to_end(tmp_path: Path, new_protocol: bool) -> None:
    _, jwk = _tee_key()
    nonce = KbsChallenge.encode_nonce(b"\x07" * 32)
    body = json.dumps(_guest_attestation(tmp_path, nonce, jwk, new_protocol=new_protocol))
    att = KbsAttestation.from_json(body)
    key, alg = att.public_key()
    assert alg == "ECDH-ES+A256KW" and isinstance(key, ec.EllipticCurvePublicKey)
    fmt, raw, _ = extract_evidence("sample", att.tee_evidence)
    assert fmt == "simulated"
    verified = evidence.verify(raw, format=fmt, at=datetime.now(UTC))
    check_runtime_binding(
        att, nonce=nonce, hash_algorithm="sha384", report_data_hex=verified.claims["report_data"]
    )
    # another nonce (replay into another session) is refused
    with pytest.raises(VerificationError) as e:
        check_runtime_binding(
            att,
            nonce="other",
            hash_algorithm="sha384",
            report_data_hex=verified.claims["report_data"],
        )
    assert e.value.code in ("nonce_mismatch", "binding_mismatch")
    # the wrong hash algorithm does not match either
    with pytest.raises(VerificationError):
        check_runtime_binding(
            att,
            nonce=nonce,
            hash_algorithm="sha512",
            report_data_hex=verified.claims["report_data"],
        )


def test_evidence_bound_to_another_key_is_refused(tmp_path: Path) -> None:
    _, jwk = _tee_key()
    _, other = _tee_key()
    nonce = "bm9uY2U="
    doc = _guest_attestation(tmp_path, nonce, jwk)
    doc["runtime-data"]["tee-pubkey"] = other  # swap in another key after attesting
    att = KbsAttestation.from_json(doc)
    _, raw, _ = extract_evidence("sample", att.tee_evidence)
    rd = evidence.verify(raw, format="simulated", at=datetime.now(UTC)).claims["report_data"]
    with pytest.raises(VerificationError) as e:
        check_runtime_binding(att, nonce=nonce, hash_algorithm="sha384", report_data_hex=rd)
    assert e.value.code == "binding_mismatch"


def test_extract_evidence_shapes() -> None:
    q = base64.b64encode(b"QUOTE").decode()
    assert extract_evidence("tdx", {"cc_eventlog": None, "quote": q}) == ("tdx", b"QUOTE", ())
    assert extract_evidence("sgx", json.dumps({"quote": q})) == ("sgx", b"QUOTE", ())
    assert extract_evidence("snp", {"attestation_report": q, "cert_chain": None}) == (
        "sev-snp",
        b"QUOTE",
        (),
    )
    chain = [{"cert_type": "VCEK", "data": [1, 2]}, {"cert_type": "Empty", "data": []}]
    got = extract_evidence("snp", {"attestation_report": list(b"RAW"), "cert_chain": chain})
    assert got == ("sev-snp", b"RAW", (("cert_chain[0] VCEK", b"\x01\x02"),))
    with pytest.raises(MalformedError) as e:
        extract_evidence("snp", {"attestation_report": q, "cert_chain": [{"cert_type": "X"}]})
    assert e.value.field is not None and e.value.field.startswith("tee-evidence.cert_chain")
    with pytest.raises(MalformedError) as e:
        extract_evidence("snp", {"attestation_report": {"version": 2}})
    assert e.value.field == "tee-evidence.attestation_report"
    with pytest.raises(VerificationError) as ve:
        extract_evidence("sample", {"svn": "1", "report_data": "AAAA"})
    assert ve.value.code == "evidence_unsigned"
    with pytest.raises(MalformedError):
        extract_evidence("tdx", {"quote": "***"})
    with pytest.raises(MalformedError):
        extract_evidence("tdx", 5)


def test_attestation_parse_errors() -> None:
    with pytest.raises(MalformedError) as e:
        KbsAttestation.from_json({"runtime-data": {"nonce": "x"}, "tee-evidence": {}})
    assert e.value.field == "runtime-data.tee-pubkey"
    with pytest.raises(MalformedError):
        KbsAttestation.from_json({"tee-pubkey": {"kty": "EC"}})
    att = KbsAttestation.from_json(
        {"tee-pubkey": {"kty": "EC", "alg": "weird"}, "tee-evidence": {}}
    )
    with pytest.raises(MalformedError):
        att.public_key()


def test_error_information() -> None:
    doc = kbs.kbs_error("PolicyDeny", "denied")
    assert doc == {"type": kbs.ERROR_TYPE_PREFIX + "PolicyDeny", "detail": "denied"}
    assert kbs.resource_name("default", "key", "k1") == "default/key/k1"
