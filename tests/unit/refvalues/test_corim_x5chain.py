"""Signed CoRIMs whose signer is a certificate: the x5chain (COSE header 33) must lead to a trust
anchor the caller gives, at the time given. The peers' x5chain test PKI (veraison/corim
testdata: root, intermediate, end entity and its key) signs here, as the peer's own tests do at
run time; fresh certificates make the negative cases."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from tests.conftest import TESTVECTORS

from veritee.cli.main import _register, cli
from veritee.refvalues import corim

CORIM = TESTVECTORS / "corim"
PKI = "generic/veraison-corim_testdata_"
WHEN = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)  # inside every certificate of the test PKI


def _read(name: str) -> bytes:
    path = CORIM / name
    if not path.is_file():
        pytest.skip(f"CoRIM test vectors not found at {CORIM} (../shared/testvectors is absent)")
    return path.read_bytes()


def _signed(chain: list[bytes], key: Any, payload: bytes | None = None) -> bytes:
    payload = payload or _read("psa-iot/services_corim-psa-valid.cbor")
    prot = cbor2.dumps(
        {1: -7, 3: "application/rim+cbor", 8: cbor2.dumps({0: {0: "Acme Gizmos"}}), 33: chain}
    )
    r, s = decode_dss_signature(
        key.sign(cbor2.dumps(["Signature1", prot, b"", payload]), ec.ECDSA(hashes.SHA256()))
    )
    return bytes(
        cbor2.dumps(
            cbor2.CBORTag(18, [prot, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")])
        )
    )


def _pki() -> tuple[bytes, bytes, x509.Certificate, Any]:
    leaf, inter = _read(PKI + "endEntity.der"), _read(PKI + "intermediateCA.der")
    root = x509.load_der_x509_certificate(_read(PKI + "rootCA.der"))
    key = serialization.load_pem_private_key(_read(PKI + "endEntity.key"), None)
    return leaf, inter, root, key


def _self_signed_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(WHEN - dt.timedelta(days=1))
            .not_valid_after(WHEN + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    return cert, key


def test_chain_to_the_trust_anchor_verifies_and_names_the_certificate() -> None:
    leaf, inter, root, key = _pki()
    blob = _signed([leaf, inter], key)
    result = corim.inspect(blob, anchors=[root], at=WHEN)
    assert result.valid, result.reasons
    assert result.signer is not None and result.signer.certificate == "CN=Acme Gizmo CoRIM signer"


def test_chain_refusals() -> None:
    leaf, inter, root, key = _pki()
    other_ca, _ = _self_signed_ca("Someone else")
    cases = {
        "other anchor": (
            corim.inspect(_signed([leaf, inter], key), anchors=[other_ca], at=WHEN),
            "corim_signer_untrusted",
        ),
        "before validity": (
            corim.inspect(
                _signed([leaf, inter], key),
                anchors=[root],
                at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            ),
            "corim_signer_untrusted",
        ),
        "no intermediate": (
            corim.inspect(_signed([leaf], key), anchors=[root], at=WHEN),
            "corim_signer_untrusted",
        ),
        "no x5chain": (
            corim.inspect(
                corim.sign(_read("psa-iot/services_corim-psa-valid.cbor"), key, signer_name="x"),
                anchors=[root],
                at=WHEN,
            ),
            "corim_signer_untrusted",
        ),
        "CA as leaf": (
            corim.inspect(_signed([inter], key), anchors=[root], at=WHEN),
            "corim_signer_untrusted",
        ),
        "wrong key": (
            corim.inspect(
                _signed([leaf, inter], ec.generate_private_key(ec.SECP256R1())),
                anchors=[root],
                at=WHEN,
            ),
            "corim_signature_invalid",
        ),
        "garbage cert": (
            corim.inspect(_signed([b"\x30\x03\x02\x01\x01", inter], key), anchors=[root], at=WHEN),
            "corim_malformed",
        ),
        "no time": (corim.inspect(_signed([leaf, inter], key), anchors=[root]), "usage"),
    }
    for name, (result, code) in cases.items():
        assert [c for c, _ in result.reasons] == [code], (name, result.reasons)


def test_load_anchors_refuses_leaf_certificates() -> None:
    leaf, _inter, root, _ = _pki()
    assert corim.load_anchors(root.public_bytes(serialization.Encoding.PEM))[0] == root
    assert len(corim.load_anchors(root.public_bytes(serialization.Encoding.PEM) * 2)) == 2
    with pytest.raises(ValueError, match="not a CA"):
        corim.load_anchors(leaf)
    with pytest.raises(ValueError):
        corim.load_anchors(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_cli_inspect_with_a_trust_anchor(tmp_path: Path) -> None:
    _register()
    leaf, inter, root, key = _pki()
    signed = tmp_path / "signed.cbor"
    signed.write_bytes(_signed([leaf, inter], key))
    anchor = tmp_path / "root.pem"
    anchor.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    runner = CliRunner()
    args = [
        "refvalues",
        "inspect",
        str(signed),
        "--trust-anchor",
        str(anchor),
        "--at",
        WHEN.isoformat(),
        "--json",
    ]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["signer"]["certificate"] == "CN=Acme Gizmo CoRIM signer"
    leaf_file = tmp_path / "leaf.der"
    leaf_file.write_bytes(leaf)
    r = runner.invoke(cli, ["refvalues", "inspect", str(signed), "--trust-anchor", str(leaf_file)])
    assert r.exit_code == 2 and "not a CA" in r.output
