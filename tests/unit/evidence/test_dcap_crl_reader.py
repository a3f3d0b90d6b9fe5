"""CRLs of Intel's layout read by a strict DER reader (issue 15 item 2, seventh pass on the cold
path, :func:`veritee.certs.read_der_crl`): what it accepts, ``cryptography`` (the generic path,
:func:`veritee.certs.load_der_crl`) accepts too and reads the same way (signed bytes, signature,
issuer, dates, revoked serials), on the real CRLs, on synthetic ones and on every one-byte and
one-bit change of them; what it does not recognise goes to the generic path, which decides."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from veritee import certs
from veritee.errors import MalformedError

_TV = Path(__file__).resolve().parents[4] / "shared" / "testvectors"
_KEY = ec.generate_private_key(ec.SECP256R1())


def _real_crls() -> list[bytes]:
    out: list[bytes] = []
    for path in sorted(_TV.glob("*/*collateral*.json")):
        doc = json.loads(path.read_text())
        for k in ("pck_crl", "root_ca_crl"):
            if isinstance(doc.get(k), str) and not doc[k].lstrip().startswith("-----"):
                out.append(bytes.fromhex(doc[k]))
    out += [p.read_bytes() for p in sorted(_TV.glob("*/*crl*.der"))]
    return list(dict.fromkeys(out))


def _name(cn: str) -> x509.Name:
    a = x509.NameAttribute
    return x509.Name([a(NameOID.COMMON_NAME, cn), a(NameOID.ORGANIZATION_NAME, "Intel Corporation"),
                      a(NameOID.LOCALITY_NAME, "Santa Clara"), a(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                      a(NameOID.COUNTRY_NAME, "US")])  # fmt: skip


def _crl(
    entries: list[tuple[int, x509.ReasonFlags | None]],
    *,
    this: datetime = datetime(2025, 6, 19, 10, 0, 35, tzinfo=UTC),
    number: int = 1,
    extensions: bool = True,
    alg: hashes.HashAlgorithm | None = None,
    name: x509.Name | None = None,
    critical: bool = False,
) -> bytes:
    """A CRL as Intel issues them (CRL number, authority key identifier, reason codes)."""
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name or _name("Intel SGX PCK Platform CA"))
        .last_update(this)
        .next_update(this + timedelta(days=30))
    )
    if extensions:
        b = b.add_extension(x509.CRLNumber(number), critical=critical).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_KEY.public_key()), critical=False
        )
    for serial, reason in entries:
        e = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this)
        if reason is not None:
            e = e.add_extension(x509.CRLReason(reason), critical=False)
        b = b.add_revoked_certificate(e.build())
    return b.sign(_KEY, alg or hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _synthetic() -> list[bytes]:
    from tests.fakes.intel import build

    syn = build()
    serials = [1, 0x7F, 0x80, 0xFF, 0x8000, 2**64 + 5, 2**158 + 1, 2**159 - 1, 0x6FC34E50]
    reasons = [None, *x509.ReasonFlags.__members__.values()]
    reasons = [r for r in reasons if r is None or r.name not in ("remove_from_crl",)]
    return [
        bytes.fromhex(syn.doc["pck_crl"]),
        bytes.fromhex(syn.doc["root_ca_crl"]),
        _crl([]),
        _crl([(s, reasons[i % len(reasons)]) for i, s in enumerate(serials)]),
        _crl([(5, x509.ReasonFlags.key_compromise)], number=2**31 - 1),
        _crl([(5, None)], this=datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        _crl([(5, None)], this=datetime(1999, 12, 31, tzinfo=UTC)),
    ]


def _generic(der: bytes) -> x509.CertificateRevocationList | None:
    try:
        crl = certs.load_der_crl(der, "crl")
    except MalformedError:
        return None
    return crl


def _agree(der: bytes) -> bool:
    """The reader reads ``der`` as the generic path does, or leaves it to the generic path (None);
    whether it read it."""
    fast = certs._read_crl(der)
    if fast is None:
        return False
    crl = _generic(der)
    assert crl is not None, der.hex()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the issuer builds without a warning too
        issuer = crl.issuer.public_bytes()
    assert crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert fast.tbs == crl.tbs_certlist_bytes and fast.signature == crl.signature
    assert fast.issuer_der == issuer == certs.crl_issuer_der(fast)
    assert fast.last_update_utc == crl.last_update_utc
    assert fast.next_update_utc == crl.next_update_utc
    # (The generic path's serials: cryptography's own, as test_dcap_crl_entries holds them.)
    assert fast.serials == certs.revoked_serials(crl) == certs.revoked_serials(fast)
    _agree_lookups(fast, certs.revoked_serials(crl))
    assert not any(e.critical for e in crl.extensions)
    return True


def _agree_lookups(fast: certs.ReadCrl, serials: frozenset[int]) -> None:
    """A serial looked up by searching the entries (a CRL's first look-up) is found exactly when
    it is in the set of every serial; also for its neighbours, 0, negative and oversized ones."""
    probes = {0, 1, -1, 2**168, 2**160 - 1, *serials}
    probes |= {s + d for s in serials for d in (-1, 1)}
    for s in probes:
        assert certs._entry_of(fast.der, fast.entries, s) == (s in serials), s
    again = certs._read_crl(fast.der)
    assert again is not None
    first = next(iter(serials), 5)
    assert (first in again) == (first in serials)  # the first look-up: by search
    assert (first in again) == (first in serials)  # the same serial: the answer kept
    assert again._serials is None
    assert (first + 1 in again) == (first + 1 in serials)  # another one: by the set
    assert again.serials == serials and again._serials is not None
    assert (first in again) == (first in serials)


def _mutations(der: bytes) -> Iterator[bytes]:
    """Every change of one bit, and every byte set to 0x00 and to 0xFF."""
    seen = {der}
    for i, b in enumerate(der):
        for v in (*(b ^ (1 << k) for k in range(8)), 0x00, 0xFF):
            m = der[:i] + bytes([v]) + der[i + 1 :]
            if m not in seen:
                seen.add(m)
                yield m


def test_real_crls_are_read_as_cryptography_reads_them() -> None:
    real = _real_crls()
    if not real:
        pytest.skip("test vectors not present")
    for der in real:
        assert _agree(der)  # every real Intel CRL takes the reader


def test_synthetic_crls_are_read_as_cryptography_reads_them() -> None:
    for der in _synthetic():
        assert _agree(der)


_REAL = _real_crls()


@pytest.mark.skipif(not _REAL, reason="test vectors not present")
@pytest.mark.parametrize("index", range(len(_REAL)))
def test_every_one_byte_change_of_real_crls_reads_as_cryptography_reads_it(index: int) -> None:
    certs.forget_checked()  # (also with no name known: the issuer read by the strict reader)
    assert sum(_agree(m) for m in _mutations(_REAL[index])) > 0


def test_every_one_byte_change_of_synthetic_crls_reads_as_cryptography_reads_it() -> None:
    for der in _synthetic()[:4]:
        for m in _mutations(der):
            _agree(m)


_BMP = x509.Name(
    [x509.NameAttribute(NameOID.COMMON_NAME, "bmp", _type=x509.name._ASN1Type.BMPString)]
)
_IDS = ["no-extensions", "sha384", "generalized-time", "critical-crl-number", "bmp-string",
        "multi-valued-rdn", "long-crl-number"]  # fmt: skip


@pytest.mark.parametrize(
    "der",
    [
        _crl([(5, None)], extensions=False),  # no CRL number, no authority key identifier
        _crl([(5, None)], alg=hashes.SHA384()),
        _crl([(5, None)], this=datetime(2050, 1, 1, tzinfo=UTC)),  # GeneralizedTime
        _crl([(5, None)], critical=True),
        _crl([(5, None)], name=_BMP),
        _crl([(5, None)], name=x509.Name.from_rfc4514_string("CN=a+O=b")),
        _crl([(5, None)], number=2**40),
    ],
    ids=_IDS,
)
def test_other_layouts_go_to_the_generic_path(der: bytes) -> None:
    assert certs._read_crl(der) is None
    fast_or_generic = certs.read_der_crl(der, "crl")
    assert isinstance(fast_or_generic, x509.CertificateRevocationList)


def test_entry_extensions_other_than_a_reason_code_go_to_the_generic_path() -> None:
    base = _crl([(5, x509.ReasonFlags.key_compromise)])
    crit = base.replace(bytes.fromhex("300c300a0603551d1504030a0101"),
                        bytes.fromhex("300f300d0603551d150101ff04030a0101"))  # fmt: skip
    assert certs._read_crl(base) is not None
    # The same entry with its reason code marked critical: lengths changed, the reader declines.
    assert certs._read_crl(crit) is None


def test_a_crl_read_by_the_reader_is_checked_like_a_loaded_one() -> None:
    """Signature, issuer name and serials of a read CRL give what the loaded one gives, also for a
    key of another curve (the generic check) and a changed signed byte (refused)."""
    der = _crl([(7, x509.ReasonFlags.key_compromise), (2**158 + 3, None)])
    fast, crl = certs._read_crl(der), x509.load_der_x509_crl(der)
    assert fast is not None
    assert certs.crl_signature_valid(fast, _KEY.public_key())
    assert not certs.crl_signature_valid(fast, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert not certs.crl_signature_valid(fast, ec.generate_private_key(ec.SECP384R1()).public_key())
    assert certs.revoked_serials(fast) == {7, 2**158 + 3}
    i = der.index(bytes.fromhex("020107"))
    tampered = certs._read_crl(der[:i] + bytes.fromhex("020108") + der[i + 3 :])
    assert tampered is not None and not certs.crl_signature_valid(tampered, _KEY.public_key())
    assert crl.is_signature_valid(_KEY.public_key())


def test_a_serial_found_inside_another_entry_is_not_revoked() -> None:
    """The encoding of serial 7 and a date's tag inside another entry's serial (its last octets
    and the date after it, or its middle) is not an entry of serial 7: the search checks that the
    entries before the place it found match in full."""
    inner = int.from_bytes(bytes.fromhex("11223344556677889900aabbccddeeff11020107"))
    middle = int.from_bytes(bytes.fromhex("1122020107170d33445566778899aabbccddeeff"))
    for der in (
        _crl([(inner, None), (9, None)]),
        _crl([(middle, x509.ReasonFlags.key_compromise)]),
    ):
        fast = certs._read_crl(der)
        assert fast is not None and bytes.fromhex("020107170d") in der
        assert 7 not in fast  # (first look-up: by search)
        assert 7 not in fast and 8 not in fast and 7 not in fast  # (then by the set)
        assert 7 not in fast.serials
        assert not certs._entry_of(der, fast.entries, 7)
        for s in fast.serials:
            assert certs._entry_of(der, fast.entries, s)
    revoked = _crl([(inner, None), (7, None)])
    fast = certs._read_crl(revoked)
    assert fast is not None and 7 in fast and certs._entry_of(revoked, fast.entries, 7)
