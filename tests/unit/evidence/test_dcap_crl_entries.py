"""CRL entries read from the DER ``cryptography`` accepted (issue 15 item 2, third pass): the
serials equal ``cryptography``'s, each distinct entry-extensions element is decoded once, and an
entry with a critical extension veritee does not understand refuses the CRL (RFC 5280 5.3), also
after the same CRL's good entries and other CRLs warmed the memo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from veritee import certs
from veritee.errors import MalformedError

_KEY = ec.generate_private_key(ec.SECP256R1())
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake CRL issuer")])
_T = datetime(2025, 6, 1, tzinfo=UTC)
_TV = Path("/work/shared/testvectors/tdx")


def _entry(serial: int, *exts: tuple[x509.ExtensionType, bool]) -> x509.RevokedCertificate:
    b = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_T)
    for value, critical in exts:
        b = b.add_extension(value, critical)
    return b.build()


def _crl(*entries: x509.RevokedCertificate) -> bytes:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_NAME)
        .last_update(_T)
        .next_update(_T + timedelta(days=30))
    )
    for e in entries:
        b = b.add_revoked_certificate(e)
    crl = b.sign(_KEY, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


_REASON = (x509.CRLReason(x509.ReasonFlags.key_compromise), False)
_UNKNOWN_CRIT = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), True)
_UNKNOWN = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), False)
_ISSUER_CRIT = (x509.CertificateIssuer([x509.DNSName("a" * 150 + ".example")]), True)
_ISSUER = (x509.CertificateIssuer([x509.DNSName("a" * 150 + ".example")]), False)
_INVALIDITY_CRIT = (x509.InvalidityDate(datetime(2025, 5, 1)), True)


def _serials(der: bytes) -> frozenset[int]:
    return frozenset(e.serial_number for e in x509.load_der_x509_crl(der))


def _real_crls() -> list[bytes]:
    import json

    doc = json.loads((_TV / "dcapqvl_tdx_quote_v4_collateral.json").read_text())
    out = [bytes.fromhex(doc["pck_crl"]), bytes.fromhex(doc["root_ca_crl"])]
    for name in ("gotdxguest_pckcrl.der", "gotdxguest_rootcrl.der"):
        if (_TV / name).exists():
            out.append((_TV / name).read_bytes())
    return out


@pytest.mark.skipif(not _TV.exists(), reason="test vectors not present")
def test_real_crls_give_cryptographys_serials_cold_and_warm() -> None:
    certs.forget_checked()
    for _ in range(2):
        for der in _real_crls():
            crl = certs.load_der_crl(der, "crl")
            assert certs.revoked_serials(crl) == _serials(der)


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [(1,)],
        [(1, _REASON), (2**159 - 1, _REASON), (300,)],
        [(7, _UNKNOWN), (8, _ISSUER), (9, _INVALIDITY_CRIT)],  # long entry: generic path
        [(x, _REASON) for x in range(1, 200)],
    ],
)
def test_accepted_crls_give_cryptographys_serials(entries: list[tuple[object, ...]]) -> None:
    der = _crl(*(_entry(e[0], *e[1:]) for e in entries))  # type: ignore[arg-type]
    for _ in range(2):
        crl = certs.load_der_crl(der, "crl")
        assert certs.revoked_serials(crl) == _serials(der)


@pytest.mark.parametrize("bad", [_UNKNOWN_CRIT, _ISSUER_CRIT])
def test_unknown_critical_entry_extension_is_refused_after_warm(bad: object) -> None:
    certs.forget_checked()
    good = _crl(_entry(1, _REASON), _entry(2, _UNKNOWN))
    certs.load_der_crl(good, "crl")  # warms the memo with these entries' extensions
    der = _crl(_entry(1, _REASON), _entry(2, _UNKNOWN), _entry(3, bad))  # type: ignore[arg-type]
    for _ in range(2):  # a refusal is never remembered
        with pytest.raises(MalformedError):
            certs.load_der_crl(der, "crl")
    assert certs.revoked_serials(certs.load_der_crl(good, "crl")) == {1, 2}


def test_entry_with_a_bad_reason_code_is_refused_after_warm() -> None:
    certs.forget_checked()
    good = _crl(_entry(1, _REASON))
    certs.load_der_crl(good, "crl")
    # The same CRL with the reason's ENUMERATED changed to a value no reason code has (7).
    bad = good.replace(bytes.fromhex("0603551d1504030a0101"), bytes.fromhex("0603551d1504030a0107"))
    assert bad != good
    with pytest.raises(MalformedError):
        certs.load_der_crl(bad, "crl")


def test_pinned_root_is_kept_across_clear_caches_and_the_pin_still_checked() -> None:
    """The pinned root (configuration) outlives ``clear_caches()``; a root of other bytes is still
    parsed and checked, and a kept root no longer pinned by the trust in use is refused."""
    from tests.fakes.intel import AT, build

    from veritee.errors import VerificationError
    from veritee.evidence import dcap, tdx

    syn = build()
    certs.forget_anchors()
    dcap.clear_caches()
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    root = certs.load_der_certificate(syn.root_der, "root")
    dcap.clear_caches()
    assert certs.load_der_certificate(syn.root_der, "root") is root  # kept, not parsed again
    bad = syn.root_der.replace(b"Fake SGX Root CA", b"Fake SGX Root C\xff", 1)
    with pytest.raises(MalformedError):
        certs.load_der_certificate(bad, "root")
    other = build()  # another fake root: the first one is not pinned by its trust
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=other.trust)
    assert e.value.code == "root_not_pinned"
    assert (
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims[
            "tcb_status"
        ]
        == "UpToDate"
    )


def test_certificate_with_an_unknown_signature_algorithm_is_still_malformed_after_warm() -> None:
    """The signature algorithm is forced unless it is exactly ecdsa-with-SHA256's DER: an
    unknown outer algorithm (the same length) is refused at load, with a good one known."""
    from tests.fakes.intel import build

    syn = build()
    certs.forget_checked()
    certs.load_der_certificate(syn.root_der, "root")
    alg = bytes.fromhex("300a06082a8648ce3d040302")
    i = syn.root_der.rindex(alg)
    bad = (
        syn.root_der[:i] + bytes.fromhex("300a06082a8648ce3d0403ff") + syn.root_der[i + len(alg) :]
    )
    with pytest.raises(MalformedError):
        certs.load_der_certificate(bad, "root")


def test_verified_collateral_windows_are_the_cheap_checks_windows() -> None:
    """The verification reuses the windows the cheap checks made from the same bytes: the same
    names, times and order as it makes itself, for a shared QE chain and one of other bytes."""
    from tests.fakes.intel import build

    from veritee.evidence import dcap

    syn = build()
    separate = syn.with_doc(qe_identity_issuer_chain=syn.doc["qe_identity_issuer_chain"] + "\n")
    for doc in (syn.doc, separate.doc):
        raw = dcap._raw_from_layout(doc)
        dcap.clear_caches()
        own = dcap._verify_collateral_uncached(raw, syn.trust, None)
        dcap.clear_caches()
        cheap = dcap._collateral_cheap(syn.trust, b"k" * 32, lambda raw=raw: raw)
        assert isinstance(cheap, dcap._CollateralCheap)
        reused = dcap._verify_collateral_uncached(raw, syn.trust, cheap)
        assert reused.windows == own.windows and reused.span == own.span
        assert len(own.windows) == 2 + 2 + 3 + 3
