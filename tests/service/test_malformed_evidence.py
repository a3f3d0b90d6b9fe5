"""Evidence that once crashed a verifier (issue 11, item 12) is refused with a reason and an audit
record by the service, never an HTTP 500: a certificate whose version ``cryptography`` refuses
at load (``InvalidVersion``), one with a duplicate extension, deeply nested JSON, a CCA claim of
the wrong type."""

from __future__ import annotations

import base64
import json

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.conftest import TESTVECTORS
from tests.fakes.der import certificate_mutations
from tests.service.conftest import Env

GPU = TESTVECTORS / "nvidia-gpu"
pytestmark = [
    pytest.mark.skipif(not GPU.is_dir(), reason="test vectors absent (../shared/testvectors)"),
    pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True),
]


def _gpu_doc(leaf_variant: str | None) -> bytes:
    chain = x509.load_pem_x509_certificates((GPU / "nvtrust_hopperCertChain.pem").read_bytes())
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    if leaf_variant is not None:
        ders[0] = certificate_mutations(ders[0])[leaf_variant]
    pem = "".join("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(d).decode() + "-----END CERTIFICATE-----\n"
                  for d in ders)  # fmt: skip
    report = (GPU / "nvtrust_hopperAttestationReport.txt").read_text().strip()
    return json.dumps({"report": report, "certificate_chain": pem}).encode()


def _cca_wrong_type() -> bytes:
    outer = cbor2.loads((TESTVECTORS / "arm-cca" / "veraison_tfrmm_cca_token.cbor").read_bytes())
    platform = list(cbor2.loads(outer.value[44234]).value)
    claims = cbor2.loads(platform[2])
    claims[2399] = 5  # software components: an integer, not an array
    platform[2] = cbor2.dumps(claims)
    value = dict(outer.value)
    value[44234] = cbor2.dumps(cbor2.CBORTag(18, platform))
    return bytes(cbor2.dumps(cbor2.CBORTag(399, value)))


CASES = {
    "invalid_version": lambda: _gpu_doc("invalid_version"),
    "duplicate_extension": lambda: _gpu_doc("duplicate_extension"),
    "deep_json": lambda: (
        b'{"report": ' + b"[" * 100000 + b"]" * 100000 + b', "certificate_chain": ""}'
    ),
    "cca_wrong_type": _cca_wrong_type,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_attest_refuses_with_a_reason_and_an_audit_record(env: Env, case: str) -> None:
    env.install_policy()
    nonce = env.nonce()
    data = CASES[case]()
    r = env.client.post(
        "/v1/attest", json={"evidence": base64.b64encode(data).decode(), "nonce": nonce.hex()}
    )
    assert r.status_code != 500, r.text
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] is False and body["reasons"][0]["code"] == "malformed"
    entries = env.client.get("/v1/admin/audit?limit=5", headers=env.admin).json()["entries"]
    assert entries[-1]["kind"] == "attest" and entries[-1]["decision"] == "reject"


def _tpm_cert_variant(name: str) -> bytes:
    """A real certificate (GCE's TPM EK/AK intermediate) made malformed: a stand-in for an EK or
    an admission certificate someone sends."""
    raw = (TESTVECTORS / "tpm" / "gcp_ek_ak_ca_intermediate_v3.crt").read_bytes()
    cert = (
        x509.load_pem_x509_certificate(raw)
        if raw.startswith(b"-----")
        else x509.load_der_x509_certificate(raw)
    )
    return certificate_mutations(cert.public_bytes(serialization.Encoding.DER))[name]


@pytest.mark.parametrize(
    "variant", ["invalid_version", "duplicate_extension", "undecodable_public_key"]
)
def test_tpm_enrollment_refuses_malformed_ek_certificates_without_500(
    env: Env, variant: str
) -> None:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    r = env.client.post("/v1/tpm/enroll", json={"ek_certificate": b64(_tpm_cert_variant(variant)), "ek_chain": [],
                                                 "ek_public": b64(b"\0" * 8), "ak_public": b64(b"\0" * 8)})  # fmt: skip
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "variant", ["invalid_version", "duplicate_extension", "undecodable_public_key"]
)
def test_certified_release_refuses_malformed_certificates_without_500(
    env: Env, variant: str
) -> None:
    der = _tpm_cert_variant(variant)
    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(der).decode()
        + "-----END CERTIFICATE-----\n"
    )
    r = env.client.post("/v1/secrets/app/release-certified", json={
        "certificate": pem, "nonce": env.nonce().hex(), "public_key": base64.b64encode(bytes(32)).decode(),
        "signature": base64.b64encode(b"\0" * 64).decode()})  # fmt: skip
    assert r.status_code in (400, 403, 404), r.text
