"""The fast paths of :mod:`veritee.certs` that DCAP leans on (issue 15 item 2): PEM chains decoded
once per CA block, certificate and CRL signatures checked over the bytes as loaded, names built
once per DER, CRL serials read once. Each must refuse exactly what ``cryptography`` refuses,
also after its caches are warm."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.fakes.intel import AT, KEYS, _crl, build, der_tlv

from veritee import certs
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import dcap, tdx

_SHA256_ALG = bytes.fromhex("300a06082a8648ce3d040302")
_SHA384_ALG = bytes.fromhex("300a06082a8648ce3d040303")


def _chain_pem(quote: bytes) -> bytes:
    return dcap.parse_quote(quote).signature_data.pck_chain_pem.rstrip(b"\0")


def _resign(
    der: bytes, key: ec.EllipticCurvePrivateKey, tbs_edit: tuple[bytes, bytes], crl: bool = False
) -> bytes:
    """``der`` (certificate or CRL) with its signed part edited and signed again by ``key``
    (ECDSA-SHA256, outer algorithm unchanged): a valid signature over the edited bytes."""
    raw = certs._walk(der, crl)
    assert raw is not None
    tbs = raw.tbs.replace(*tbs_edit, 1)
    assert tbs != raw.tbs
    sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der_tlv(0x30, tbs + raw.outer_alg + der_tlv(0x03, b"\0" + sig))


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _warm() -> tuple[object, bytes]:
    syn = build()
    dcap.clear_caches()
    assert (
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims[
            "tcb_status"
        ]
        == "UpToDate"
    )
    return syn, _chain_pem(syn.quote)


@pytest.mark.parametrize("style", ["plain", "crlf", "nul", "text-around"])
def test_pem_chain_reads_as_cryptography_reads_it(style: str) -> None:
    pem = _chain_pem(build().quote)
    text = {
        "plain": pem,
        "crlf": pem.replace(b"\n", b"\r\n"),
        "nul": pem,  # the loader's callers strip the quote's NUL padding
        "text-around": b"subject=Fake\n" + pem + b"\nthe end\n",  # the slow path
    }[style]
    want = [
        c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(text)
    ]
    for _ in range(2):  # cold, then with the CA blocks known
        got = certs.load_pem_certificates(text, "chain")
        assert [c.public_bytes(serialization.Encoding.DER) for c in got] == want
        assert [certs.der_of(c) for c in got] == want


def test_pem_chain_with_bad_base64_is_refused_after_warm() -> None:
    _, pem = _warm()
    lines = pem.split(b"\n")
    for bad in (b"*", b"=", b" "):
        broken = b"\n".join([lines[0], bad + lines[1][1:], *lines[2:]])
        with pytest.raises(MalformedError):
            certs.load_pem_certificates(broken, "chain")


def test_tampered_pck_certificate_body_is_refused_after_warm() -> None:
    """A PCK certificate whose signed part changed (its serial number) under the original
    signature: the signature over the bytes as loaded does not verify."""
    syn, pem = _warm()
    chain = x509.load_pem_x509_certificates(pem)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    bad = der.replace(b"\x02\x01\x03", b"\x02\x01\x07", 1)  # serial 3 -> 7
    assert bad != der
    quote = syn.quote.replace(pem, _pem(bad) + pem[len(_pem(der)) :])
    for keep in (True, False):
        dcap.clear_caches(keep_collateral=keep)
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        with pytest.raises(VerificationError) as e:
            tdx.verify(quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        assert e.value.code == "chain_invalid"


def test_inner_and_outer_algorithm_must_agree() -> None:
    """Signed by the PCK CA's key over exactly these bytes, but the signed part names
    ECDSA-SHA384 while the outer algorithm is ECDSA-SHA256: refused as cryptography refuses it."""
    syn, pem = _warm()
    chain = x509.load_pem_x509_certificates(pem)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    bad = _resign(der, KEYS["pck_ca"], (_SHA256_ALG, _SHA384_ALG))
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(bad).verify_directly_issued_by(chain[1])
    _refused_as_chain(syn, pem, bad, len(_pem(der)))


def test_issuer_name_must_be_the_parent_subject() -> None:
    """Signed by the PCK CA's key, but naming another issuer: refused."""
    syn, pem = _warm()
    chain = x509.load_pem_x509_certificates(pem)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    bad = _resign(der, KEYS["pck_ca"], (b"Fake SGX PCK Platform CA", b"Fake SGX PCK Platform CB"))
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(bad).verify_directly_issued_by(chain[1])
    _refused_as_chain(syn, pem, bad, len(_pem(der)))


def _refused_as_chain(syn: object, pem: bytes, bad_leaf: bytes, leaf_pem_len: int) -> None:
    """The chain with ``bad_leaf`` for its PCK certificate: refused by the fast path's loader and
    signature check, with the CA and its link to the root known (a new platform)."""
    dcap.clear_caches(keep_collateral=True)
    loaded = certs.load_pem_certificates(_pem(bad_leaf) + pem[leaf_pem_len:], "pck_chain")
    assert certs.der_of(loaded[0]) == bad_leaf
    with pytest.raises(ValueError):
        certs.verify_issued_by(loaded[0], loaded[1])
    with pytest.raises(VerificationError) as e:
        dcap._verify_chain(loaded, syn.trust, "PCK chain")  # type: ignore[attr-defined]
    assert e.value.code == "chain_invalid"


def test_leaf_with_a_name_that_does_not_decode_is_malformed_after_warm() -> None:
    """Names are built once per DER: a PCK certificate whose subject differs (not UTF-8) is
    not covered by the names checked before."""
    _, pem = _warm()
    chain = x509.load_pem_x509_certificates(pem)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    bad = der.replace(b"Fake SGX PCK Certificate", b"Fake SGX PCK Certificat\xff", 1)
    assert bad != der
    with pytest.raises(MalformedError):
        certs.load_der_certificate(bad, "pck")
    with pytest.raises(MalformedError):
        certs.load_pem_certificates(_pem_unchecked(bad) + pem[len(_pem(der)) :], "pck_chain")


def _pem_unchecked(der: bytes) -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("which", ["pck_crl", "root_ca_crl"])
def test_tampered_crl_is_refused_after_warm(which: str) -> None:
    """A CRL whose signed part changed under its signature, and one re-signed with an inner
    algorithm that differs from the outer one: both refused with a warm cache."""
    syn, _ = _warm()
    der = bytes.fromhex(syn.doc[which])
    bad_body = der.replace(b"250619000000Z", b"250619000001Z", 1)  # thisUpdate, one second on
    assert bad_body != der
    key = KEYS["pck_ca" if which == "pck_crl" else "root"]
    bad_alg = _resign(der, key, (_SHA256_ALG, _SHA384_ALG), crl=True)
    issuer = (KEYS["pck_ca"] if which == "pck_crl" else KEYS["root"]).public_key()
    assert not x509.load_der_x509_crl(bad_body).is_signature_valid(issuer)
    with pytest.raises(ValueError):  # cryptography: "an invalid CRL"
        x509.load_der_x509_crl(bad_alg).is_signature_valid(issuer)
    for bad, refused in ((bad_body, CollateralError), (bad_alg, MalformedError)):
        tampered = syn.with_doc(**{which: bad.hex()})
        with pytest.raises(refused) as e:
            tdx.verify(syn.quote, collateral=tampered.collateral, at=AT, trust=syn.trust)
        if refused is CollateralError:
            assert e.value.code == "crl_invalid"


def test_crl_entry_dates_are_checked_at_load_and_serials_kept() -> None:
    """The loader no longer reads each entry's revocation date: cryptography refuses a bad one
    at load. The serial numbers are read once."""
    this = datetime(2025, 6, 19, tzinfo=UTC)
    der = _crl("Fake SGX PCK Platform CA", KEYS["pck_ca"], [5, 6, 300], this, this.replace(day=29))
    crl = certs.load_der_crl(der, "pck_crl")
    assert certs.revoked_serials(crl) == frozenset({5, 6, 300})
    stamp = this.strftime("%y%m%d%H%M%SZ").encode()
    i = der.rindex(stamp)
    bad = der[:i] + stamp.replace(stamp[2:4], b"13", 1) + der[i + len(stamp) :]  # month 13
    with pytest.raises(MalformedError):
        certs.load_der_crl(bad, "pck_crl")


def test_qe_identity_chain_is_read_on_its_own_when_it_differs() -> None:
    """TCB info and QE identity share their chain's parse only for the same bytes: a QE identity
    chain that is the PCK CA's (not the TCB Signing certificate) is still refused, warm."""
    syn, _ = _warm()
    other = syn.with_doc(qe_identity_issuer_chain=syn.doc["pck_crl_issuer_chain"])
    for keep in (True, False):
        dcap.clear_caches(keep_collateral=keep)
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        with pytest.raises(VerificationError) as e:
            tdx.verify(syn.quote, collateral=other.collateral, at=AT, trust=syn.trust)
        assert e.value.code == "collateral_signer_invalid"


@pytest.mark.parametrize("count", [1, 2])
def test_root_with_a_name_that_does_not_decode_is_malformed_after_warm(count: int) -> None:
    """The root's issuer only (1), or its issuer and subject, the same bytes (2, built once):
    refused at load with the names of the good root known."""
    syn, _ = _warm()
    bad = syn.root_der.replace(b"Fake SGX Root CA", b"Fake SGX Root C\xff", count)
    assert bad.count(b"Fake SGX Root C\xff") == count
    with pytest.raises(MalformedError):
        certs.load_der_certificate(bad, "root")
    with pytest.raises(MalformedError):
        certs.load_pem_certificates(_pem_unchecked(bad), "root")


_B, _E = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def _layouts(first: bytes) -> dict[str, bytes]:
    body = first[len(_B) : -len(_E)]
    lines = body.strip().split(b"\n")
    joined = b"".join(lines)
    return {
        "as is": first,
        "no break after BEGIN": _B + body.lstrip() + _E,
        "no break before END": _B + b"\n" + body.strip() + _E,
        "one line": _B + joined + _E,
        "76-character lines": _B + b"\n" + b"\n".join(joined[i : i + 76] for i in range(0, len(joined), 76)) + b"\n" + _E,
        "CRLF": first.replace(b"\n", b"\r\n"),
        "CR only": _B + b"\r" + b"\r".join(lines) + b"\r" + _E,
        "blank line inside": _B + b"\n" + b"\n".join(lines[:3]) + b"\n\n" + b"\n".join(lines[3:]) + b"\n" + _E,
        "blank line after BEGIN": _B + b"\n\n" + body.lstrip(),
        "blank line before END": _B + body.rstrip() + b"\n\n" + _E,
        "blank CRLF line inside": _B + b"\r\n" + b"\r\n".join(lines[:3]) + b"\r\n\r\n" + b"\r\n".join(lines[3:]) + b"\r\n" + _E,
        "lone CR inside a line": _B + b"\n" + lines[0][:9] + b"\r" + lines[0][9:] + b"\n" + b"\n".join(lines[1:]) + b"\n" + _E,
        "CR before a break": _B + b"\n" + lines[0] + b"\r\r\n" + b"\n".join(lines[1:]) + b"\n" + _E,
        "two breaks after BEGIN": _B + b"\n\n" + body.strip() + b"\n" + _E,
        "space at line ends": _B + b"\n" + b" \n".join(lines) + b"\n" + _E,
        "padding inside": _B + b"\n" + lines[0][:-1] + b"=\n" + b"\n".join(lines[1:]) + b"\n" + _E,
        "lowercase markers": first.replace(_B, _B.lower()),
        "X509 CERTIFICATE label": first.replace(b"BEGIN CERTIFICATE", b"BEGIN X509 CERTIFICATE").replace(b"END CERTIFICATE", b"END X509 CERTIFICATE"),
        "text around": b"garbage\n" + first + b"\nmore",
    }  # fmt: skip


def test_pem_layouts_are_read_exactly_as_cryptography_reads_them() -> None:
    """Every PEM layout is accepted (with the same DER) or refused as ``cryptography`` does:
    the fast reader takes only plain lines of base64 and leaves anything else to it."""
    pem = _chain_pem(build().quote)
    leaf = pem[: pem.index(_E) + len(_E)]
    root = pem[pem.rindex(_B) : pem.rindex(_E) + len(_E)]  # a CA: kept by its block once checked
    for name, text in [*_layouts(leaf).items(), *_layouts(root).items()]:
        try:
            want: object = [
                c.public_bytes(serialization.Encoding.DER)
                for c in x509.load_pem_x509_certificates(text)
            ]
        except ValueError:
            want = "refused"
        for _ in range(2):  # cold, then with the CA blocks known
            try:
                got: object = [certs.der_of(c) for c in certs.load_pem_certificates(text, "x")]
            except MalformedError:
                got = "refused"
            assert got == want, name


def test_leaf_with_another_key_is_refused_after_warm() -> None:
    """Certificate keys are kept by the certificate's exact DER: a PCK leaf signed by the PCK
    CA but carrying another key (the QE report was signed by the original key) is refused with
    the original leaf's key and the CA's key kept."""
    syn, pem = _warm()
    chain = x509.load_pem_x509_certificates(pem)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    point = lambda k: k.public_key().public_bytes(  # noqa: E731
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    bad = _resign(der, KEYS["pck_ca"], (point(KEYS["pck"]), point(KEYS["other"])))
    x509.load_der_x509_certificate(bad).verify_directly_issued_by(chain[1])  # a valid link
    sig = dcap.parse_quote(syn.quote).signature_data
    for keep in (True, False):
        dcap.clear_caches(keep_collateral=keep)
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        loaded = certs.load_pem_certificates(_pem(bad) + pem[len(_pem(der)) :], "pck_chain")
        dcap._verify_chain(loaded, syn.trust, "PCK chain")  # type: ignore[attr-defined]
        key = dcap._pubkey(loaded[0], "pck_chain")
        assert key.public_numbers() == KEYS["other"].public_key().public_numbers()
        with pytest.raises(VerificationError):
            dcap._verify_raw(key, sig.qe_report_signature, sig.qe_report.raw, "QE", code="x")
        good = dcap._pubkey(certs.load_pem_certificates(pem, "pck_chain")[0], "pck_chain")
        assert good.public_numbers() == KEYS["pck"].public_key().public_numbers()


def test_public_key_of_keeps_p256_keys_by_exact_der() -> None:
    _, pem = _warm()
    leaf, ca = certs.load_pem_certificates(pem, "chain")[:2]
    assert certs.public_key_of(leaf) is certs.public_key_of(leaf)
    assert certs.public_key_of(leaf).public_numbers() == leaf.public_key().public_numbers()
    assert certs.public_key_of(ca).public_numbers() == ca.public_key().public_numbers()
    assert certs.public_key_of(ca).public_numbers() != certs.public_key_of(leaf).public_numbers()
    for _ in range(300):  # bounded
        certs._KEYS.put(bytes(8) + _.to_bytes(2, "big"), certs.public_key_of(ca))
    assert len(certs._KEYS.values()) <= 256


def test_the_ec_key_test_is_the_abc_check() -> None:
    """``certs.is_ec_public_key`` says what ``isinstance(key, ec.EllipticCurvePublicKey)`` says,
    for cryptography's keys of every curve, other keys and other objects."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    keys: list[object] = [
        ec.generate_private_key(c).public_key()
        for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())
    ]
    keys += [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate().public_key(),
             rsa.generate_private_key(65537, 1024).public_key(), None, b"key", object()]  # fmt: skip
    for key in keys:
        assert certs.is_ec_public_key(key) == isinstance(key, ec.EllipticCurvePublicKey)
    assert certs._p256(keys[0]) is keys[0] and certs._p256(keys[1]) is None
