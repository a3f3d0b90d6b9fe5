"""Two shortcuts of a cold DCAP verification (issue 15 item 2, seventh pass): a certificate's P-256
SubjectPublicKeyInfo taken as loaded instead of re-encoded, and a test-vector-layout collateral
document keyed by its exact strings instead of their SHA-256. Each gives what it replaced, and a
changed document is a new key, refused with every cache warm."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.fakes.intel import AT, build

from veritee import certs
from veritee.errors import VerificationError
from veritee.evidence import dcap, tdx

_TV = Path(__file__).resolve().parents[4] / "shared" / "testvectors"


def _pems() -> list[bytes]:
    syn = build()
    out = [syn.doc["tcb_info_issuer_chain"].encode(), syn.doc["pck_crl_issuer_chain"].encode()]
    out.append(dcap.parse_quote(syn.quote).signature_data.pck_chain_pem)
    for path in sorted(_TV.glob("*/*collateral*.json")):
        doc = json.loads(path.read_text())
        out += [doc[k].encode() for k in ("tcb_info_issuer_chain", "pck_crl_issuer_chain")
                if isinstance(doc.get(k), str)]  # fmt: skip
    for path in sorted(_TV.glob("*/dcapqvl_*quote*.bin")):
        out.append(dcap.parse_quote(path.read_bytes()).signature_data.pck_chain_pem)
    return out


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_p256_key_as_loaded_is_its_public_bytes() -> None:
    certs.forget_checked()
    n = 0
    for pem in _pems():
        for cert in certs.load_pem_certificates(pem.rstrip(b"\0 \r\n"), "chain"):
            fresh = x509.load_der_x509_certificate(certs.der_of(cert))
            assert certs.public_key_der(cert) == _spki(fresh)
            n += 1
    assert n >= 7


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_another_curve_is_encoded_by_cryptography(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other curve")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(9).not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256())
    )  # fmt: skip
    loaded = certs.load_der_certificate(cert.public_bytes(serialization.Encoding.DER), "c")
    assert certs.public_key_der(loaded) == _spki(cert)


class _Str(str):
    __slots__ = ()


def test_a_layout_document_is_keyed_by_its_exact_strings() -> None:
    syn = build()
    key = dcap._layout_key(syn.doc, syn.trust)
    assert key == dcap._layout_key(json.loads(json.dumps(syn.doc)), syn.trust)  # equal strings
    assert key != dcap._layout_key(syn.doc, dcap.DcapTrust())  # other pinned roots
    for k in dcap._LAYOUT_KEYS:
        changed = {**syn.doc, k: syn.doc[k] + " "}
        assert dcap._layout_key(changed, syn.trust) != key
    # A str subclass (its own hash and equality) is hashed by SHA-256 over its characters.
    sub = {**syn.doc, "tcb_info": _Str(syn.doc["tcb_info"])}
    assert dcap._layout_key(sub, syn.trust) == dcap._layout_key_uncached(
        syn.doc, syn.trust.cache_tag
    )
    assert dcap._layout_key({**syn.doc, "pck_crl": None}, syn.trust) is None


def test_a_changed_document_is_refused_with_every_cache_warm() -> None:
    syn = build()
    dcap.clear_caches()
    ok = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    assert ok.claims["tcb_status"] == "UpToDate"
    info = json.loads(syn.doc["tcb_info"])
    info["tcbEvaluationDataNumber"] += 1
    bad = syn.with_doc(tcb_info=json.dumps(info, separators=(",", ":")))
    for _ in range(2):  # a refusal is never remembered
        with pytest.raises(VerificationError) as e:
            tdx.verify(syn.quote, collateral=bad.collateral, at=AT, trust=syn.trust)
        assert e.value.code == "collateral_signature_invalid"
    again = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    assert again.claims == ok.claims


def test_a_key_not_parsed_here_is_still_parsed_for_its_encoding() -> None:
    """A certificate loaded elsewhere (its DER known through ``der_of``) whose point is not on the
    curve: its key is parsed (and refused) as before, not taken from the DER as it stands."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad point")])
    der = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(9).not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )  # fmt: skip
    i = der.index(bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004"))
    bad = der[: i + 27] + bytes(64) + der[i + 91 :]  # the point (0, 0)
    cert = x509.load_der_x509_certificate(bad)
    assert certs.der_of(cert) == bad
    with pytest.raises(ValueError):
        certs.public_key_der(cert)
