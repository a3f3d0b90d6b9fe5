"""What a new platform's PCK chain shares with every other chain and with the collateral (the
PCK CA and the root) is parsed, checked and signature-verified once; its own PCK certificate
is checked every time."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.fakes.intel import AT, build

from veritee import certs
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import dcap, tdx


def _chain_pem(quote: bytes) -> bytes:
    return dcap.parse_quote(quote).signature_data.pck_chain_pem.rstrip(b"\0")


def test_ca_certificates_are_checked_once_per_der_leaves_every_time() -> None:
    pem = _chain_pem(build().quote)
    dcap.clear_caches()
    first = certs.load_pem_certificates(pem, "pck_chain")
    again = certs.load_pem_certificates(pem, "pck_chain")
    assert again[1] is first[1] and again[2] is first[2]  # PCK CA, root: checked once
    assert again[0] is not first[0]  # the PCK certificate is checked on every load
    dcap.clear_caches(keep_collateral=True)  # a new platform: CA and root stay known
    assert certs.load_pem_certificates(pem, "pck_chain")[1] is first[1]
    dcap.clear_caches()  # collateral reload forgets them too
    assert certs.load_pem_certificates(pem, "pck_chain")[1] is not first[1]


def _flip_last_byte(cert: x509.Certificate) -> bytes:
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature's s: still DER, no longer a valid signature
    return x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("which", [0, 1])
def test_cached_ca_link_does_not_admit_a_badly_signed_certificate(which: int) -> None:
    """After a good chain with the same CA and root verified (CA link cached), a PCK
    certificate (0) or a PCK CA (1) whose signature does not verify still fails."""
    syn = build()
    dcap.clear_caches()
    assert (
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims[
            "tcb_status"
        ]
        == "UpToDate"
    )
    pem = _chain_pem(syn.quote)
    chain = x509.load_pem_x509_certificates(pem)
    parts = [c.public_bytes(serialization.Encoding.PEM) for c in chain]
    parts[which] = _flip_last_byte(chain[which])
    bad = b"".join(parts)
    assert len(bad) == len(pem)
    quote = syn.quote.replace(pem, bad)
    for keep in (True, False):
        dcap.clear_caches(keep_collateral=keep)
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        with pytest.raises(VerificationError) as e:
            tdx.verify(quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        assert e.value.code == "chain_invalid"


def test_a_name_that_does_not_decode_is_malformed_at_load() -> None:
    """Names are forced by building them (no RFC 4514 formatting): a CA certificate or a CRL
    whose issuer is not valid UTF-8 is still refused by the loaders, never later."""
    syn = build()
    ca = x509.load_pem_x509_certificates(syn.doc["pck_crl_issuer_chain"].encode())[0]
    der = ca.public_bytes(serialization.Encoding.DER)
    bad = der.replace(b"Fake SGX Root CA", b"Fake SGX Root C\xff", 1)
    assert bad != der
    dcap.clear_caches()
    with pytest.raises(MalformedError):
        certs.load_der_certificate(bad, "pck_ca")
    crl = bytes.fromhex(syn.doc["pck_crl"])
    bad_crl = crl.replace(b"Fake SGX PCK Platform CA", b"Fake SGX PCK Platform C\xff", 1)
    assert bad_crl != crl
    with pytest.raises(MalformedError):
        certs.load_der_crl(bad_crl, "pck_crl")


def test_a_forgotten_platform_forgets_its_leaf_key_and_keeps_its_cas() -> None:
    """``clear_caches(keep_collateral=True)`` models a platform never seen: its PCK
    certificate's key is built again, the PCK CA's and root's stay known."""
    syn = build()
    dcap.clear_caches()
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    chain = x509.load_pem_x509_certificates(_chain_pem(syn.quote))
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    assert all(certs._KEYS.get(der) is not None for der in ders)
    dcap.clear_caches(keep_collateral=True)
    assert certs._KEYS.get(ders[0]) is None
    assert certs._KEYS.get(ders[1]) is not None and certs._KEYS.get(ders[2]) is not None
    claims = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims
    assert claims["tcb_status"] == "UpToDate"
    assert certs._KEYS.get(ders[0]) is not None
