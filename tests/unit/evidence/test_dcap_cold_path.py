"""A cold DCAP verification's shortcuts (issue 15 item 2, fourth pass on the cold path): names built
once per exact DER and reused (also for the TCB signing certificate's own checks), a name's DER as
loaded standing for ``public_bytes()``, and the pinned root's key kept across ``clear_caches()``
with the root itself. Each refuses what it refused before, with every cache warm."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.fakes.intel import (
    AT,
    KEYS,
    NO_SIGN_KEY_USAGE,
    OTHER_SIGNER,
    SIGNING_KEY_USAGE,
    Synthetic,
    build,
    certificate,
    pem_chain,
    resign_collateral,
    root_certificate,
    signed_under_root,
)

from veritee import certs
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import dcap, tdx

_NO_SIGN = NO_SIGN_KEY_USAGE


def _verify(syn: Synthetic) -> dict[str, Any]:
    return tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims


def _names() -> list[x509.Name]:
    a = x509.NameAttribute
    return [
        x509.Name([a(NameOID.COMMON_NAME, "plain")]),
        x509.Name([a(NameOID.COUNTRY_NAME, "US"), a(NameOID.COMMON_NAME, "Zürich ✓")]),
        x509.Name([a(NameOID.COMMON_NAME, "bmp", _type=x509.name._ASN1Type.BMPString)]),
        x509.Name([a(NameOID.COMMON_NAME, "uni", _type=x509.name._ASN1Type.UniversalString)]),
        x509.Name([a(NameOID.COMMON_NAME, "ia5", _type=x509.name._ASN1Type.IA5String)]),
        x509.Name.from_rfc4514_string("CN=multi+O=valued,C=DE"),
        x509.Name.from_rfc4514_string("O=b+O=a+CN=sorted"),
    ]


@pytest.mark.parametrize("name", _names(), ids=lambda n: n.rfc4514_string())
def test_a_name_as_loaded_is_its_public_bytes(name: x509.Name) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(5).not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256())
    )  # fmt: skip
    certs.forget_checked()
    (loaded,) = certs.load_pem_certificates(cert.public_bytes(serialization.Encoding.PEM), "t")
    assert certs.subject_der(loaded) == loaded.subject.public_bytes() == name.public_bytes()
    assert certs.subject_name(loaded) == loaded.subject == name
    assert certs.issuer_name(loaded) == loaded.issuer == name


@pytest.mark.parametrize(
    ("cn", "ca", "key_usage"),
    [
        ("Intel SGX TCB Signing", True, SIGNING_KEY_USAGE),
        ("Intel SGX PCK Processor CA", False, SIGNING_KEY_USAGE),
        ("Intel SGX TCB Signing 2", False, SIGNING_KEY_USAGE),
        ("Intel SGX TCB Signing", False, _NO_SIGN),
        ("Intel SGX TCB Signing", False, None),
    ],
    ids=["ca", "other-cn", "cn-suffix", "no-digital-signature", "no-key-usage"],
)
def test_a_wrong_tcb_signer_is_refused_with_every_name_and_key_warm(
    cn: str, ca: bool, key_usage: x509.KeyUsage | None
) -> None:
    good = signed_under_root(build(), "Intel SGX TCB Signing")
    dcap.clear_caches()
    assert _verify(good)["tcb_status"] == "UpToDate"  # names, root, root key: all warm
    bad = signed_under_root(build(), cn, ca=ca, key_usage=key_usage, serial=41)
    with pytest.raises(VerificationError) as e:
        _verify(bad)
    assert e.value.code == "collateral_signer_invalid"


def test_the_kept_root_key_still_refuses_a_signer_it_did_not_sign() -> None:
    syn = build()
    dcap.clear_caches()
    assert _verify(syn)["tcb_status"] == "UpToDate"
    root = root_certificate(syn)
    name = certs._CHECKED_NAMES.get(certs.subject_der(root))
    dcap.clear_caches()  # the pinned root and its key are kept (configuration)
    assert certs._KEYS.get(certs.der_of(root)) is not None
    # Its name as kept (its attributes, when it was read and not built).
    assert certs._CHECKED_NAMES.get(certs.subject_der(root)) == name is not None
    # "Issued" by the root's name, signed by another key.
    forged = certificate("Intel SGX TCB Signing", OTHER_SIGNER, "Fake SGX Root CA", KEYS["other"], 47, False,
                         key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    with pytest.raises(VerificationError) as e:
        _verify(resign_collateral(syn, OTHER_SIGNER, pem_chain(forged, root)))
    assert e.value.code == "chain_invalid"
    certs.forget_anchors()
    dcap.clear_caches()
    assert certs._KEYS.get(certs.der_of(root)) is None


def _crl_der(alg: hashes.HashAlgorithm) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crl issuer")])
    crl = (
        x509.CertificateRevocationListBuilder().issuer_name(name)
        .last_update(datetime(2025, 1, 1, tzinfo=UTC)).next_update(datetime(2026, 1, 1, tzinfo=UTC))
        .sign(key, alg)
    )  # fmt: skip
    return crl.public_bytes(serialization.Encoding.DER)


def test_a_crl_signature_algorithm_other_than_ecdsa_sha256_is_still_read_and_checked() -> None:
    """Only the exact DER of ecdsa-with-SHA256 skips forcing the signature algorithm at load."""
    certs.forget_checked()
    assert isinstance(
        certs.load_der_crl(_crl_der(hashes.SHA256()), "t").signature_hash_algorithm, hashes.SHA256
    )
    assert isinstance(
        certs.load_der_crl(_crl_der(hashes.SHA384()), "t").signature_hash_algorithm, hashes.SHA384
    )
    der = _crl_der(hashes.SHA256())
    oid = bytes.fromhex("06082a8648ce3d040302")  # ecdsa-with-SHA256, inner and outer
    assert der.count(oid) == 2
    unknown = der.replace(oid, bytes.fromhex("06082a8648ce3d04037f"))  # an unknown algorithm
    with pytest.raises(MalformedError):
        certs.load_der_crl(unknown, "t")


def test_collateral_records_and_the_result_are_the_dataclasses() -> None:
    """The verified set, the cheap read of a set and the TCB result are built without the frozen
    dataclasses' __init__ (``veritee._frozen.maker``): the same objects, field for field, still
    frozen; the verified set's memo is its own LRU, its marks computed on first use."""
    import dataclasses

    syn = build()
    dcap.clear_caches()
    _verify(syn)
    (verified,) = dcap.DEFAULT_CACHE.collateral.values()
    (cheap,) = dcap.DEFAULT_CACHE.collateral_cheap.values()
    (result,) = verified.memo.values()
    for made, cls in ((verified, dcap._VerifiedCollateral), (cheap, dcap._CollateralCheap),
                      (result, dcap.DcapResult)):  # fmt: skip
        assert type(made) is cls
        fields = {f.name: getattr(made, f.name) for f in dataclasses.fields(made)}
        assert made == cls(**fields) and vars(made) == fields
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.fmspc = ""  # type: ignore[misc]
    assert verified.marks == verified.marks_from() and "marks" in vars(verified)
    dcap.clear_caches()
    _verify(syn)
    (again,) = dcap.DEFAULT_CACHE.collateral.values()
    assert again.memo is not verified.memo


def test_the_pinned_roots_pem_text_is_kept_with_the_root() -> None:
    """The pinned root's PEM block text is kept with the root across clear_caches (its one DER,
    not decoded again); another root's text is decoded and refused as before, and forgetting the
    anchors forgets the text."""
    syn = build()
    dcap.clear_caches()
    assert _verify(syn)["tcb_status"] == "UpToDate"
    root = root_certificate(syn)
    pem = dcap.parse_quote(syn.quote).signature_data.pck_chain_pem.rstrip(b"\0")
    block = certs._pem_blocks(pem)
    assert block is not None and len(block) == 3
    block = block[2:]  # (the root's, as the quote's chain writes it)
    dcap.clear_caches()  # (the root kept as pinned; its text is kept once read as the kept root)
    assert _verify(syn)["tcb_status"] == "UpToDate"
    dcap.clear_caches()
    kept = certs._CHECKED_PEM.get(block[0])
    assert kept is not None and certs.der_of(kept) == certs.der_of(root)
    assert certs._loaded(kept) is not None and certs._CHECKED_CAS.get(certs.der_of(root)) is kept
    assert _verify(syn)["tcb_status"] == "UpToDate"
    with pytest.raises(VerificationError) as e:  # the text kept, the pin still checked
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT)  # (Intel's root only)
    assert e.value.code == "root_not_pinned"
    certs.forget_anchors()
    dcap.clear_caches()
    assert certs._CHECKED_PEM.get(block[0]) is None
    assert _verify(syn)["tcb_status"] == "UpToDate"
