"""A new platform's per-certificate reads (issue 15 item 2): a certificate's validity, basic
constraints and fingerprint are read once per certificate object loaded in
:mod:`veritee.certs`; they are what ``cryptography`` says, and the checks that use them still
run on every call (the pin against the trust in use, the windows against ``at``)."""

from __future__ import annotations

import base64
import hashlib
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from tests.fakes.intel import AT, build

from veritee import certs
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import dcap, tdx


def _chain_pem(quote: bytes) -> bytes:
    return dcap.parse_quote(quote).signature_data.pck_chain_pem.rstrip(b"\0")


def _basic_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def test_per_certificate_reads_are_cryptographys() -> None:
    pem = _chain_pem(build().quote)
    dcap.clear_caches()
    for loaded in (certs.load_pem_certificates(pem, "chain"), x509.load_pem_x509_certificates(pem)):
        for cert in loaded:
            der = cert.public_bytes(serialization.Encoding.DER)
            for _ in range(2):  # first read, then as kept
                assert certs.validity(cert) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
                assert certs.is_ca(cert) is _basic_ca(cert)
                assert certs.sha256_of(cert) == hashlib.sha256(der).digest()
    leaf, ca, root = certs.load_pem_certificates(pem, "chain")
    assert (certs.is_ca(leaf), certs.is_ca(ca), certs.is_ca(root)) == (False, True, True)


def test_pin_is_checked_on_every_call_with_the_fingerprint_kept() -> None:
    """The root's fingerprint is computed once per root object; whether the trust in use pins
    it is asked on every call: a trust that does not pin it refuses with everything warm."""
    syn, other = build(), dcap.DcapTrust(frozenset({bytes(32)}))
    dcap.clear_caches()
    for keep in (True, False, True):
        assert tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        dcap.clear_caches(keep_collateral=keep)
        with pytest.raises(VerificationError) as e:
            tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=other)
        assert e.value.code == "root_not_pinned"


@pytest.mark.parametrize("serial", [b"\x03", b"\xfd", b"\x00"])
def test_a_leaf_is_loaded_without_a_deprecation_warning_escaping(serial: bytes) -> None:
    """``cryptography`` warns at load for a serial number that is not positive: such a leaf is
    loaded inside the block that silences it (a positive one without the block), as before."""
    pem = _chain_pem(build().quote)
    leaf = x509.load_pem_x509_certificates(pem)[0]
    der = leaf.public_bytes(serialization.Encoding.DER)
    head = b"\xa0\x03\x02\x01\x02\x02\x01\x03"  # version 3, serial 3 (the fake PCK certificate)
    assert der.count(head) == 1
    der = der.replace(head, head[:-1] + serial)
    text = (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    )
    dcap.clear_caches()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = certs.load_pem_certificates(text, "leaf")
    assert [w for w in seen if issubclass(w.category, CryptographyDeprecationWarning)] == []
    assert certs.der_of(got[0]) == der


def test_cached_chain_is_kept_per_trust_and_exact_bytes() -> None:
    """The verified-chain cache is keyed by the trust's pinned roots and the chain's exact PEM
    bytes: with the good chain cached, another trust and a chain one byte off are checked anew."""
    syn, other = build(), dcap.DcapTrust(frozenset({bytes(32)}))
    dcap.clear_caches()
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=other)
    assert e.value.code == "root_not_pinned"
    pem = _chain_pem(syn.quote)
    at = pem.index(b"\n", 40) + 200  # inside the leaf's base64
    while not pem[at : at + 1].isalnum():
        at += 1
    swapped = b"B" if pem[at : at + 1] != b"B" else b"C"
    quote = syn.quote.replace(pem, pem[:at] + swapped + pem[at + 1 :])
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)  # cached, warm
    with pytest.raises((VerificationError, MalformedError)):
        tdx.verify(quote, collateral=syn.collateral, at=AT, trust=syn.trust)


def test_pck_chain_and_cheap_records_are_the_dataclasses() -> None:
    """The verified chain and the cheap read are built without the frozen dataclasses' __init__
    (``veritee._frozen.maker``): the same objects, field for field, still frozen."""
    import dataclasses

    syn = build()
    sig = dcap.parse_quote(syn.quote).signature_data
    dcap.clear_caches()
    key = dcap._pck_chain_key(sig.pck_chain_pem, syn.trust)
    cheap = dcap._pck_cheap(sig.pck_chain_pem, key, syn.trust)
    assert isinstance(cheap, dcap._PckCheap)
    chain = dcap._pck_chain(sig.pck_chain_pem, syn.trust, key, cheap)
    for made, cls in ((cheap, dcap._PckCheap), (chain, dcap._PckChain)):
        assert type(made) is cls
        fields = {f.name: getattr(made, f.name) for f in dataclasses.fields(made)}
        assert made == cls(**fields) and vars(made) == fields
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.key = None  # type: ignore[misc]
    assert chain.leaf_serial == cheap.certs[0].serial_number
    assert chain.ca_serial == cheap.certs[1].serial_number
    assert chain.ca_name == cheap.ca_name
