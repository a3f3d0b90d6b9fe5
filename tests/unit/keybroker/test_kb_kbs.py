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
    empty = KbsRequest.from_json({"version": "0.4.0", "tee": "snp", "extra-params": ""})
    assert empty.extra_params == {} and select_hash(empty) == "sha384"
    only256 = KbsRequest.from_json(
        {
            "version": "0.4.0",
            "tee": "sample",
            "extra-params": {"supported-hash-algorithms": ["sha256"]},
        }
    )
    assert select_hash(only256) == "sha256"
    with pytest.raises(UsageError) as e:
        KbsRequest.from_json({"version": "0.4.0", "tee": "se", "extra-params": {}})
    assert e.value.code == "tee_unsupported"
    with pytest.raises(MalformedError):
        KbsRequest.from_json(b"not json")
    with pytest.raises(MalformedError):
        KbsRequest.from_json({"version": 4, "tee": "tdx"})


@pytest.mark.parametrize("version", ["0.4.0", "0.4.0+build.7"])
def test_protocol_version_accepted_as_trustee_does(version: str) -> None:
    """Trustee's KBS requires semver ``=0.4.0``: build metadata is ignored, nothing else passes."""
    kbs.check_protocol_version(version)


@pytest.mark.parametrize("version", ["0.1.0", "0.3.0", "0.4.1", "0.5.0", "1.0.0", "0.4.0-rc.1"])
def test_other_protocol_versions_are_refused(version: str) -> None:
    with pytest.raises(UsageError) as e:
        kbs.check_protocol_version(version)
    assert e.value.code == "protocol_version"


@pytest.mark.parametrize("version", ["0.4", "v0.4.0", "00.4.0", "0.4.0 ", "", "0.4.0+", 4, None])
def test_malformed_protocol_versions_are_malformed(version: Any) -> None:
    with pytest.raises(MalformedError):
        kbs.check_protocol_version(version)


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
    tmp_path: Path, nonce: str, jwk: dict[str, Any], *, alg: str = "sha384", additional: str = "",
) -> dict[str, Any]:  # fmt: skip
    """What a guest sends (protocol 0.4.0), built as guest-components builds it: the primary
    evidence binds the runtime data with ``additional-evidence`` (not with veritee's helpers)."""
    runtime = {"tee-pubkey": jwk, "nonce": nonce, "additional-evidence": additional}
    text = json.dumps(runtime, sort_keys=True, separators=(",", ":"))
    report_data = hashlib.new(alg, text.encode()).digest().ljust(64, b"\0")
    platform = SimulatedPlatform(tmp_path / "plat", measurement=MEAS)
    ev = {"evidence": base64.b64encode(platform.evidence(report_data)).decode()}
    return {"runtime-data": {"tee-pubkey": jwk, "nonce": nonce},
            "tee-evidence": {"primary_evidence": ev, "additional_evidence": additional}}  # fmt: skip


def test_attestation_binding_end_to_end(tmp_path: Path) -> None:
    _, jwk = _tee_key()
    nonce = KbsChallenge.encode_nonce(b"\x07" * 32)
    body = json.dumps(_guest_attestation(tmp_path, nonce, jwk))
    att = KbsAttestation.from_json(body)
    key, alg = att.public_key()
    assert alg == "ECDH-ES+A256KW" and isinstance(key, ec.EllipticCurvePublicKey)
    fmt, raw, _ = extract_evidence("sample", att.primary_evidence)
    assert fmt == "simulated"
    verified = evidence.verify(raw, format=fmt, at=datetime.now(UTC))
    rd = verified.claims["report_data"]
    check_runtime_binding(att, nonce=nonce, hash_algorithm="sha384", report_data_hex=rd)
    with pytest.raises(VerificationError) as e:  # another session's nonce
        check_runtime_binding(att, nonce="other", hash_algorithm="sha384", report_data_hex=rd)
    assert e.value.code == "nonce_mismatch"
    with pytest.raises(VerificationError):  # the wrong hash algorithm does not match either
        check_runtime_binding(att, nonce=nonce, hash_algorithm="sha512", report_data_hex=rd)


def test_evidence_bound_to_another_key_or_other_devices_is_refused(tmp_path: Path) -> None:
    _, jwk = _tee_key()
    _, other = _tee_key()
    nonce = "bm9uY2U="
    doc = _guest_attestation(tmp_path, nonce, jwk)
    doc["runtime-data"]["tee-pubkey"] = other  # swap in another key after attesting
    att = KbsAttestation.from_json(doc)
    _, raw, _ = extract_evidence("sample", att.primary_evidence)
    rd = evidence.verify(raw, format="simulated", at=datetime.now(UTC)).claims["report_data"]
    with pytest.raises(VerificationError) as e:
        check_runtime_binding(att, nonce=nonce, hash_algorithm="sha384", report_data_hex=rd)
    assert e.value.code == "binding_mismatch"
    doc = _guest_attestation(tmp_path, nonce, jwk, additional='{"nvidia":{"a":1}}')
    doc["tee-evidence"]["additional_evidence"] = '{"nvidia":{"a":2}}'  # devices swapped
    att = KbsAttestation.from_json(doc)
    _, raw, _ = extract_evidence("sample", att.primary_evidence)
    rd = evidence.verify(raw, format="simulated", at=datetime.now(UTC)).claims["report_data"]
    with pytest.raises(VerificationError) as e:
        check_runtime_binding(att, nonce=nonce, hash_algorithm="sha384", report_data_hex=rd)
    assert e.value.code == "binding_mismatch"


def test_extract_evidence_shapes() -> None:
    q = base64.b64encode(b"QUOTE").decode()
    assert extract_evidence("tdx", {"cc_eventlog": None, "quote": q}) == ("tdx", b"QUOTE", ())
    assert extract_evidence("sgx", {"quote": q}) == ("sgx", b"QUOTE", ())
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
    for bad in (5, json.dumps({"quote": q})):  # protocol 0.1's JSON text is gone with 0.1
        with pytest.raises(MalformedError):
            extract_evidence("tdx", bad)


def test_attestation_parse_errors() -> None:
    good_ev = {"primary_evidence": {}, "additional_evidence": ""}
    with pytest.raises(MalformedError) as e:
        KbsAttestation.from_json({"runtime-data": {"nonce": "x"}, "tee-evidence": good_ev})
    assert e.value.field == "runtime-data.tee-pubkey"
    for bad in (
        {"tee-pubkey": {"kty": "EC"}, "tee-evidence": good_ev},  # protocol 0.1's layout
        {"runtime-data": {"nonce": 5, "tee-pubkey": {}}, "tee-evidence": good_ev},
        {"runtime-data": {"nonce": "n", "tee-pubkey": {}}, "tee-evidence": {"evidence": "x"}},
        {"runtime-data": {"nonce": "n", "tee-pubkey": {}},
         "tee-evidence": {"primary_evidence": {}, "additional_evidence": 5}},
        {"runtime-data": {"nonce": "n", "tee-pubkey": {}}, "tee-evidence": good_ev,
         "init-data": {"format": "toml"}},
    ):  # fmt: skip
        with pytest.raises(MalformedError):
            KbsAttestation.from_json(bad)
    att = KbsAttestation.from_json(
        {
            "runtime-data": {"nonce": "n", "tee-pubkey": {"kty": "EC", "alg": "weird"}},
            "tee-evidence": good_ev,
        }
    )
    with pytest.raises(MalformedError):
        att.public_key()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": ' + b"9" * 5000 + b"}",
        b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}",
        b"\xff" * 10,
        b"{" * 3 + b"}",
    ],
)
def test_hostile_json_is_malformed_not_a_crash(body: bytes) -> None:
    for parse in (KbsRequest.from_json, KbsAttestation.from_json):
        with pytest.raises(MalformedError):
            parse(body)
    with pytest.raises(MalformedError):
        kbs.parse_additional_evidence(body.decode("latin-1"))


INIT_TOML = """algorithm = "sha384"
version = "0.1.0"

[data]
"aa.toml" = '''
[token_configs.kbs]
url = "https://kbs.example"
'''
"policy.rego" = '''
package agent_policy
default CreateContainerRequest := false
policy_data := {"containers": [{"image": "nginx"}]}
'''
"note" = "plain"
"""


def test_init_data_digest_and_claims_as_trustee_presents_them() -> None:
    init = kbs.InitData.from_json({"format": "toml", "body": INIT_TOML})
    assert init.algorithm == "sha384" and init.digest == hashlib.sha384(INIT_TOML.encode()).digest()
    assert init.claims["aa.toml"] == {"token_configs": {"kbs": {"url": "https://kbs.example"}}}
    assert init.claims["agent_policy_claims"] == {"containers": [{"image": "nginx"}]}
    assert "policy.rego" not in init.claims and init.claims["note"] == "plain"
    for bad, err in (
        ({"format": "json", "body": "{}"}, UsageError),
        ({"format": "toml", "body": "not = toml = at all"}, MalformedError),
        (
            {"format": "toml", "body": 'algorithm = "md5"\nversion = "0.1.0"\n[data]\n'},
            MalformedError,
        ),
        (
            {"format": "toml", "body": 'algorithm = "sha256"\nversion = "0.1.0"\n[data]\nx = 1\n'},
            MalformedError,
        ),
        ({"format": "toml", "body": "a = " + "[" * 5000 + "]" * 5000}, MalformedError),
        ({"format": "toml", "body": "x" * 300_000}, MalformedError),
        ({"format": "toml"}, MalformedError),
        ("toml", MalformedError),
    ):
        with pytest.raises(err):
            kbs.InitData.from_json(bad)


def _init(algorithm: str = "sha384") -> kbs.InitData:
    body = f'algorithm = "{algorithm}"\nversion = "0.1.0"\n[data]\nk = "v"\n'
    return kbs.InitData.from_json({"format": "toml", "body": body})


@pytest.mark.parametrize(
    ("fmt", "claim", "size"),
    [("sev-snp", "host_data", 32), ("tdx", "mr_config_id", 48), ("sgx", "config_id", 64)],
)
def test_init_data_in_hostdata_mrconfigid_configid_cut_or_padded(
    fmt: str, claim: str, size: int
) -> None:
    """Trustee's ``regularize_data``: a longer digest is cut, a shorter one zero-padded."""
    for algorithm in ("sha256", "sha384", "sha512"):
        init = _init(algorithm)
        field_value = init.digest[:size].ljust(size, b"\0")
        assert kbs.check_init_data(fmt, {claim: field_value.hex()}, init) == field_value.hex()
        wrong = bytearray(field_value)
        wrong[0] ^= 1
        with pytest.raises(VerificationError) as e:
            kbs.check_init_data(fmt, {claim: bytes(wrong).hex()}, init)
        assert e.value.code == "init_data_mismatch"
        with pytest.raises(VerificationError):
            kbs.check_init_data(fmt, {claim: "00" * size}, init)  # nothing bound


@pytest.mark.parametrize("fmt", ["tpm", "az-snp-vtpm", "az-tdx-vtpm"])
def test_init_data_in_pcr8_of_a_vtpm(fmt: str) -> None:
    init = _init("sha256")
    pcr8 = hashlib.sha256(bytes(32) + init.digest).hexdigest()
    assert kbs.check_init_data(fmt, {"pcr8": pcr8}, init) == pcr8
    with pytest.raises(VerificationError):
        kbs.check_init_data(fmt, {"pcr8": init.digest.hex()}, init)
    with pytest.raises(VerificationError):  # no PCR8 in the quote
        kbs.check_init_data(fmt, {}, init)
    with pytest.raises(VerificationError):  # PCR8 binds SHA-256 digests only
        kbs.check_init_data(fmt, {"pcr8": pcr8}, _init("sha384"))


def test_init_data_on_cca_is_the_whole_personalization_value() -> None:
    init = _init("sha512")
    assert kbs.check_init_data("cca", {"personalization": init.digest.hex()}, init)
    with pytest.raises(VerificationError):
        kbs.check_init_data(
            "cca", {"personalization": _init("sha256").digest.hex()}, _init("sha256")
        )


def test_init_data_where_nothing_binds_it_is_refused() -> None:
    for fmt in ("simulated", "nitro", "nvidia-gpu"):
        with pytest.raises(VerificationError) as e:
            kbs.check_init_data(fmt, {"host_data": "00" * 32}, _init())
        assert e.value.code == "init_data_unbound"


def test_additional_evidence_devices() -> None:
    assert kbs.parse_additional_evidence("") == []
    pem = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
    entry = {
        "arch": "HOPPER",
        "uuid": "u",
        "evidence": "11e0",
        "certificate": base64.b64encode(pem).decode(),
    }
    devices = kbs.parse_additional_evidence(
        json.dumps({"nvidia": {"device_evidence_list": [entry, entry]}})
    )
    assert [d.label for d in devices] == ["nvidia[0]", "nvidia[1]"]
    assert json.loads(devices[0].data) == {"report": "11e0", "certificate_chain": pem.decode()}
    assert devices[0].format == "nvidia-gpu"
    for text, err in (
        ('{"sampledevice": {"svn": "1"}}', VerificationError),
        ('{"dpu": {}}', VerificationError),
        ('{"nvidia": {"device_evidence_list": []}}', MalformedError),
        ('{"nvidia": {"device_evidence_list": [{"evidence": 1}]}}', MalformedError),
        ('{"nvidia": {"device_evidence_list": [5]}}', MalformedError),
        ('["nvidia"]', MalformedError),
        (json.dumps({"nvidia": {"device_evidence_list": [entry] * 17}}), MalformedError),
    ):
        with pytest.raises(err):
            kbs.parse_additional_evidence(text)


def test_device_binding_is_the_runtime_data_hash_cut_to_the_nonce() -> None:
    _, jwk = _tee_key()
    att = KbsAttestation.from_json({"runtime-data": {"nonce": "n", "tee-pubkey": jwk},
                                    "tee-evidence": {"primary_evidence": {}, "additional_evidence": "x"}})  # fmt: skip
    runtime = json.dumps({"nonce": "n", "tee-pubkey": jwk}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha384(runtime.encode()).digest()
    kbs.check_device_binding(att, hash_algorithm="sha384", report_data_hex=digest[:32].hex())
    for bad in (digest[1:33].hex(), "", "zz"):
        with pytest.raises(VerificationError):
            kbs.check_device_binding(att, hash_algorithm="sha384", report_data_hex=bad)


def test_error_information() -> None:
    doc = kbs.kbs_error("PolicyDeny", "denied")
    assert doc == {"type": kbs.ERROR_TYPE_PREFIX + "PolicyDeny", "detail": "denied"}
    assert kbs.resource_name("default", "key", "k1") == "default/key/k1"
    assert kbs.resource_name("_repo", "-t", "v1.2") == "_repo/-t/v1.2"  # Trustee's grammar
    for bad in (("a", "b", ".c"), ("a b", "c", "d"), ("a", "", "c"), ("a", "b", "c" * 200)):
        with pytest.raises(MalformedError):
            kbs.resource_name(*bad)
