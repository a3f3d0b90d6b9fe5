"""A name of the plain layout is checked by reading its DER instead of building it
(``veritee.certs._name_decodes``, issue 15 item 2: a cold DCAP verification built every new
certificate's names). The reader may only say yes where building the name with ``cryptography``
succeeds without a warning: thousands of random names (tags, strings, invalid UTF-8, lengths,
multi-valued RDNs, spliced into a certificate ``cryptography`` loads) hold it to that, and a name
that does not decode is still refused at load."""

from __future__ import annotations

import base64
import random
import warnings
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from veritee import certs
from veritee.errors import MalformedError

_KEY = ec.derive_private_key(4242, ec.SECP256R1())
_MARKER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MARKER-SUBJECT-NAME")])


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def _template() -> bytes:
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    cert = (
        x509.CertificateBuilder().subject_name(_MARKER).issuer_name(issuer)
        .public_key(_KEY.public_key()).serial_number(7)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(_KEY, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


_TEMPLATE = _template()


def _with_subject(name_der: bytes) -> bytes:
    """The template certificate with its subject's DER replaced (signature not redone: loading
    does not check it)."""
    marker = _MARKER.public_bytes()
    _, _, s, e = certs._tlv(_TEMPLATE, 0, len(_TEMPLATE))
    _, _, ts, te = certs._tlv(_TEMPLATE, s, e)
    tbs = _TEMPLATE[ts:te]
    assert tbs.count(marker) == 1
    new_tbs = _tlv(0x30, tbs.replace(marker, name_der))
    return _tlv(0x30, new_tbs + _TEMPLATE[te:e])


_OIDS = ["0603550403", "0603550406", "060355040a", "0603550405", "060b2b0601040182373c020103",
         "06032a0304"]  # fmt: skip
_TAGS = [0x0C, 0x13, 0x16, 0x14, 0x1E, 0x1C, 0x03, 0x04, 0x12, 0x1A, 0x02, 0x05, 0x0C, 0x13]


def _value(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    n = rng.choice([0, 1, 2, 3, 20, 64, 65, 70])
    if kind == 0:
        return bytes(rng.choice(b"abcXYZ 019'-.@_*") for _ in range(n))
    if kind == 1:
        return "".join(rng.choice("aé✓𝄞Z") for _ in range(max(n // 2, 1))).encode()
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(n))
    if kind == 3:
        return "bmp✓".encode("utf-16-be")
    if kind == 4:
        return b"\xed\xa0\x80" + b"x" * rng.randrange(3)  # a UTF-8 encoded surrogate
    return b"\xc0\xaf"  # overlong


def _name(rng: random.Random) -> bytes:
    rdns = []
    for _ in range(rng.randrange(5)):
        attrs = [
            _tlv(0x30, bytes.fromhex(rng.choice(_OIDS)) + _tlv(rng.choice(_TAGS), _value(rng)))
            for _ in range(1 if rng.random() < 0.8 else 2)
        ]
        rdns.append(_tlv(0x31, b"".join(sorted(attrs))))
    return _tlv(0x30, b"".join(rdns))


def _builds_quietly(der: bytes) -> bool | None:
    """None: cryptography does not load the certificate; else whether its subject builds without
    an error or a warning."""
    try:
        cert = x509.load_der_x509_certificate(_with_subject(der))
    except ValueError:
        return None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            cert.subject
        except Exception:
            return False
    return not seen


def test_the_reader_says_yes_only_where_cryptography_builds_the_name_quietly() -> None:
    rng = random.Random(15)
    yes = loaded = 0
    for _ in range(6000):
        der = _name(rng)
        quiet = _builds_quietly(der)
        if quiet is None:
            continue
        loaded += 1
        if certs._name_decodes(der):
            yes += 1
            assert quiet, der.hex()
    assert loaded > 3000 and yes > 300  # both sides were exercised


@pytest.mark.parametrize(
    "value",
    [
        _tlv(0x0C, b"\xff\xfe"),
        _tlv(0x0C, b"\xed\xa0\x80"),
        _tlv(0x1E, b"\xd8\x00"),
        _tlv(0x13, b"\xc3\xa9\x80"),
    ],
    ids=["utf8-invalid", "utf8-surrogate", "bmp-lone-surrogate", "printable-invalid"],
)
def test_a_name_that_does_not_decode_is_still_refused_at_load(value: bytes) -> None:
    der = _tlv(0x30, _tlv(0x31, _tlv(0x30, bytes.fromhex("0603550403") + value)))
    assert not certs._name_decodes(der)
    b64 = base64.encodebytes(_with_subject(der))  # (cryptography may refuse it at load too)
    pem = b"-----BEGIN CERTIFICATE-----\n" + b64 + b"-----END CERTIFICATE-----\n"
    certs.forget_checked()
    with pytest.raises(MalformedError):
        certs.load_pem_certificates(pem, "t")


def test_a_name_read_not_built_is_built_once_when_asked_for() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "read, not built")])
    der = _with_subject(name.public_bytes())
    certs.forget_checked()
    (cert,) = certs.load_pem_certificates(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM), "t"
    )
    assert certs._CHECKED_NAMES.get(name.public_bytes()) == certs._plain_attributes(
        name.public_bytes()
    )
    assert certs.subject_name(cert) == name
    assert certs.subject_name(cert) is certs._CHECKED_NAMES.get(name.public_bytes())
    assert certs.subject_der(cert) == name.public_bytes()


def _retagged(der: bytes, rng: random.Random) -> bytes:
    """The same name with some UTF8String values re-tagged PrintableString and back (equal as
    Names, other DER)."""
    attrs = certs._plain_attributes(der)
    assert attrs is not None
    rdns = b"".join(
        _tlv(0x31, _tlv(0x30, oid + _tlv(_tag(value, rng), value.encode()))) for oid, value in attrs
    )
    return _tlv(0x30, rdns)


_PRINTABLE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def _tag(value: str, rng: random.Random) -> int:
    """UTF8String, or PrintableString where the value fits its alphabet (cryptography checks)."""
    return rng.choice((0x0C, 0x13)) if set(value) <= _PRINTABLE else 0x0C


def _cns(name: x509.Name) -> list[str | bytes]:
    return [a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def test_plain_attributes_compare_and_name_as_the_names_do() -> None:
    rng = random.Random(16)
    plain = []
    for _ in range(4000):
        der = _name(rng)
        if certs._plain_attributes(der) is not None and _builds_quietly(der):
            plain.append(der)
    assert len(plain) > 300
    for der in plain:
        name = x509.load_der_x509_certificate(_with_subject(der)).subject
        attrs = certs._plain_attributes(der)
        assert attrs is not None
        assert [v for o, v in attrs if o == certs._CN_OID] == _cns(name)
        other = rng.choice([_retagged(der, rng), rng.choice(plain), der])
        other_name = x509.load_der_x509_certificate(_with_subject(other)).subject
        assert (certs._plain_attributes(other) == attrs) == (other_name == name)


def test_plain_names_of_a_certificate_are_its_names() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    a = x509.NameAttribute
    cn_utf8 = x509.Name(
        [a(NameOID.COMMON_NAME, "Intel SGX TCB Signing", _type=x509.name._ASN1Type.UTF8String)]
    )
    cn_printable = x509.Name(
        [a(NameOID.COMMON_NAME, "Intel SGX TCB Signing", _type=x509.name._ASN1Type.PrintableString)]
    )
    root = x509.Name([a(NameOID.COMMON_NAME, "root"), a(NameOID.ORGANIZATION_NAME, "o")])
    for subject, issuer, self_issued in [(cn_utf8, root, False), (cn_utf8, cn_printable, True),
                                         (cn_utf8, cn_utf8, True)]:  # fmt: skip
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(9)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256())
        )  # fmt: skip
        certs.forget_checked()
        (loaded,) = certs.load_pem_certificates(cert.public_bytes(serialization.Encoding.PEM), "t")
        assert (loaded.subject == loaded.issuer) is self_issued
        assert certs.plain_names(loaded) == (["Intel SGX TCB Signing"], self_issued)
        # (read from the attributes kept when the names were checked, and from the DER alike)
        assert type(certs._CHECKED_NAMES.get(subject.public_bytes())) is tuple
        certs._CHECKED_NAMES.clear()
        assert certs.plain_names(loaded) == (["Intel SGX TCB Signing"], self_issued)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        long_cn = x509.Name([a(NameOID.COMMON_NAME, "x" * 65, _validate=False)])
    cert = (
        x509.CertificateBuilder().subject_name(long_cn).issuer_name(root)
        .public_key(key.public_key()).serial_number(9)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256())
    )  # fmt: skip
    (loaded,) = certs.load_pem_certificates(cert.public_bytes(serialization.Encoding.PEM), "t")
    assert certs.plain_names(loaded) is None  # not the plain layout: the Names are built


def _real_names() -> list[bytes]:
    import json
    from pathlib import Path

    tv = Path(__file__).resolve().parents[3] / "shared" / "testvectors"
    names: list[bytes] = []
    for path in sorted(tv.glob("*/*collateral*.json")):
        doc = json.loads(path.read_text())
        for key in ("tcb_info_issuer_chain", "pck_crl_issuer_chain"):
            if isinstance(doc.get(key), str):
                for cert in x509.load_pem_x509_certificates(doc[key].encode()):
                    raw = certs._walk(cert.public_bytes(serialization.Encoding.DER), False)
                    assert raw is not None
                    names += [raw.subject, raw.issuer]
    return list(dict.fromkeys(names))


def test_the_inline_name_reader_agrees_with_the_tlv_reader() -> None:
    """``_plain_attributes`` (four short headers per attribute read inline) gives what
    ``_plain_attributes_tlv`` gives: on real Intel names and every one-byte change of them (each
    bit flipped, 0x00, 0xFF), on thousands of random names, and on long-form lengths."""
    rng = random.Random(15)
    names = _real_names() + [_name(rng) for _ in range(3000)]
    long_value = _tlv(
        0x30, _tlv(0x31, _tlv(0x30, bytes.fromhex("060355040a") + _tlv(0x0C, b"x" * 130)))
    )
    names.append(long_value)
    checked = 0
    for der in names[:40]:
        for i, b in enumerate(der):
            for v in (*(b ^ (1 << k) for k in range(8)), 0x00, 0xFF):
                m = der[:i] + bytes([v]) + der[i + 1 :]
                assert certs._plain_attributes(m) == certs._plain_attributes_tlv(m), m.hex()
                checked += 1
    for der in names:
        assert certs._plain_attributes(der) == certs._plain_attributes_tlv(der), der.hex()
    assert checked > 1000
    assert certs._plain_attributes(long_value) is not None
