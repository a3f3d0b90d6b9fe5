"""The PCK SGX extension read in one match (Intel's layout: the whole extension, and its TCB
alone) gives what the generic DER reader gives, on the real and synthetic extensions and on
every one-bit change of them."""

from __future__ import annotations

import pytest
from cryptography import x509
from tests.conftest import TESTVECTORS
from tests.fakes.intel import sgx_extension

from veritee.errors import MalformedError
from veritee.evidence import dcap, dcap_pck

TV = TESTVECTORS


def _real_extensions() -> list[bytes]:
    out = []
    for name in ("tdx/dcapqvl_tdx_quote_v4.bin", "sgx/dcapqvl_sgx_quote_v3.bin"):
        path = TV / name
        if not path.is_file():
            continue
        pem = dcap.parse_quote(path.read_bytes()).signature_data.pck_chain_pem.rstrip(b"\0")
        leaf = x509.load_pem_x509_certificates(pem)[0]
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(dcap.SGX_EXTENSIONS_OID))
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        out.append(ext.value.value)
    return out


def _generic(der: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as m:
        m.setattr(dcap_pck, "_tcb_fast", lambda *_: None)
        m.setattr(dcap_pck, "_ext_fast", lambda *_: None)
        return _outcome(der)


def _tcb_only(der: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as m:
        m.setattr(dcap_pck, "_ext_fast", lambda *_: None)
        return _outcome(der)


def _outcome(der: bytes) -> object:
    try:
        return dcap_pck.parse_pck_extension(der)
    except MalformedError as e:
        return ("refused", e.field)


def _samples() -> list[bytes]:
    return [
        *_real_extensions(),
        sgx_extension([5] * 16, 11),
        sgx_extension([0x7F, 0x80, 0xFF, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 200], 0x1234),
        sgx_extension(list(range(16)), 0),
    ]


def test_fast_and_generic_agree_on_good_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    for der in _samples():
        fast = _outcome(der)
        assert not isinstance(fast, tuple)
        assert fast == _generic(der, monkeypatch) == _tcb_only(der, monkeypatch)
        assert dcap_pck._TCB_RE.search(der) is not None  # the fast paths were taken
        assert dcap_pck._ext_fast(der) == fast


def test_fast_and_generic_agree_on_every_one_byte_change(monkeypatch: pytest.MonkeyPatch) -> None:
    for der in _samples():
        for i in range(len(der)):
            for flip in (0x01, 0x80):
                bad = der[:i] + bytes([der[i] ^ flip]) + der[i + 1 :]
                want = _generic(bad, monkeypatch)
                assert _outcome(bad) == want, (i, flip)
                assert _tcb_only(bad, monkeypatch) == want, (i, flip)


def test_whole_extension_fast_path_checks_its_lengths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two lengths the match leaves free (the outer SEQUENCE's, the TCB's and its item's):
    any other value than the content's is the generic reader's to judge."""
    for der in _samples():
        for at in (2, 3, 38, 39, 54, 55):  # outer, item 2 and TCB lengths (two bytes each)
            for delta in (1, -1):
                bad = der[:at] + bytes([(der[at] + delta) & 0xFF]) + der[at + 1 :]
                assert dcap_pck._ext_fast(bad) is None, (at, delta)
                assert _outcome(bad) == _generic(bad, monkeypatch)
