"""Certificate extensions of Intel's layout read without building them (issue 15 item 2, seventh
pass, :func:`veritee.certs._read_extensions`): what the reader accepts, ``cert.extensions`` parses
too, with the same basic constraints, key usage and SGX extension value, on Intel's real
certificates, synthetic ones of the same layout, and every one-bit and one-byte change of them
that ``cryptography`` still loads; anything else is left to ``cert.extensions``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.fakes.intel import AT, build, sgx_extension

from veritee import certs
from veritee.evidence import dcap, tdx

_TV = Path(__file__).resolve().parents[4] / "shared" / "testvectors"
_SGX_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")


def _real() -> list[bytes]:
    pems: list[bytes] = []
    for path in sorted(_TV.glob("*/*collateral*.json")):
        doc = json.loads(path.read_text())
        pems += [doc[k].encode() for k in ("tcb_info_issuer_chain", "pck_crl_issuer_chain")
                 if isinstance(doc.get(k), str)]  # fmt: skip
    for path in sorted(_TV.glob("*/dcapqvl_*quote*.bin")):
        pems.append(dcap.parse_quote(path.read_bytes()).signature_data.pck_chain_pem.rstrip(b"\0"))
    ders = [
        c.public_bytes(serialization.Encoding.DER)
        for pem in pems
        for c in x509.load_pem_x509_certificates(pem)
    ]
    return list(dict.fromkeys(ders))


_KEY = ec.generate_private_key(ec.SECP256R1())


def _synthetic(
    cn: str, *, ca: bool, path: int | None = None, usage: str = "sign", sgx: bool = False
) -> bytes:
    """A certificate with the extensions of Intel's layout."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)  # fmt: skip
    if usage == "ca":
        flags.update(key_cert_sign=True, crl_sign=True)
    elif usage == "pck":
        flags.update(digital_signature=True, content_commitment=True)
    else:
        flags.update(digital_signature=True)
    url = "https://certificates.example.com/crl/" + cn.replace(" ", "") + ".der"
    b = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(_KEY.public_key()).serial_number(0x1234567890ABCDEF)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(_KEY.public_key()), False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(url)], None, None, None)]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(_KEY.public_key()), False)
        .add_extension(x509.KeyUsage(**flags), True)
        .add_extension(x509.BasicConstraints(ca, path), True)
    )  # fmt: skip
    if sgx:
        b = b.add_extension(
            x509.UnrecognizedExtension(_SGX_OID, sgx_extension([3] * 16, 11)), False
        )
    return b.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


_SYNTHETIC = [
    _synthetic("root", ca=True, usage="ca"),
    _synthetic("pck ca", ca=True, path=0, usage="ca"),
    _synthetic("pck ca 5", ca=True, path=5, usage="ca"),
    _synthetic("pck", ca=False, usage="pck", sgx=True),
    _synthetic("tcb signer", ca=False, usage="pck"),
    _synthetic("signer", ca=False, usage="sign"),
]
_REAL = _real()


def _load(der: bytes) -> x509.Certificate | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        return None


def _agree(der: bytes) -> bool:
    """For a certificate ``cryptography`` loads: the reader reads its extensions as
    ``cert.extensions`` does, or leaves them to it (None); whether it read them."""
    cert = _load(der)
    raw = certs._walk(der, False) if cert is not None else None
    if cert is None or raw is None or not raw.exts:
        return False
    read = certs._read_extensions(raw.exts)
    if read is None:
        return False
    exts = cert.extensions  # parses: never raises for what the reader accepts
    assert exts.get_extension_for_class(x509.BasicConstraints).value.ca == read.ca
    assert exts.get_extension_for_class(x509.KeyUsage).value.digital_signature == (
        read.digital_signature
    )
    try:
        sgx = exts.get_extension_for_oid(_SGX_OID).value
    except x509.ExtensionNotFound:
        assert read.sgx is None
    else:
        assert isinstance(sgx, x509.UnrecognizedExtension) and sgx.value == read.sgx
    return True


def _mutations(der: bytes) -> Iterator[bytes]:
    """Every change of one bit, and every byte set to 0x00 and to 0xFF."""
    seen = {der}
    for i, b in enumerate(der):
        for v in (*(b ^ (1 << k) for k in range(8)), 0x00, 0xFF):
            m = der[:i] + bytes([v]) + der[i + 1 :]
            if m not in seen:
                seen.add(m)
                yield m


def test_real_and_synthetic_certificates_are_read() -> None:
    if not _REAL:
        pytest.skip("test vectors not present")
    for der in _REAL + _SYNTHETIC:
        assert _agree(der)


@pytest.mark.skipif(not _REAL, reason="test vectors not present")
@pytest.mark.parametrize("index", range(len(_REAL)))
def test_every_change_of_a_real_certificate_reads_as_cryptography_reads_it(index: int) -> None:
    assert sum(_agree(m) for m in _mutations(_REAL[index])) > 0


@pytest.mark.parametrize("index", range(len(_SYNTHETIC)))
def test_every_change_of_a_synthetic_certificate_reads_as_cryptography_reads_it(
    index: int,
) -> None:
    assert _agree(_SYNTHETIC[index])
    assert sum(_agree(m) for m in _mutations(_SYNTHETIC[index])) > 0


def test_other_layouts_are_left_to_cryptography() -> None:
    """The fakes' certificates (no CRL distribution point) and a leaf with an extension more."""
    syn = build()
    for pem in (syn.doc["pck_crl_issuer_chain"], syn.doc["tcb_info_issuer_chain"]):
        for cert in x509.load_pem_x509_certificates(pem.encode()):
            raw = certs._walk(cert.public_bytes(serialization.Encoding.DER), False)
            assert raw is not None and certs._read_extensions(raw.exts) is None
    assert (
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims[
            "tcb_status"
        ]
        == "UpToDate"
    )
