"""The PCK certificate's SGX extension is read as DER (X.690), by both readers: a value that a
strict DER reader would read otherwise, or not at all, is refused rather than read leniently. Before,
a repeated item shadowed the first (the last FMSPC won), ``02 01 80`` read as SVN 128 (DER: -128),
``02 02 00 05`` as 5 (not the shortest form), ENUMERATED stood for INTEGER and a length in the
long form for a short one. Such values sit inside the Intel-signed PCK certificate: this is
defence in depth against a signer's encoding error, not a forgery."""

from __future__ import annotations

import pytest
from tests.fakes.intel import der_tlv, sgx_extension

from veritee.errors import MalformedError
from veritee.evidence import dcap_pck
from veritee.evidence.dcap_quote import SGX_EXTENSIONS_OID


def _item(sub: str, value: bytes) -> bytes:
    oid = der_tlv(0x06, dcap_pck._oid_body(f"{SGX_EXTENSIONS_OID}.{sub}"))
    return der_tlv(0x30, oid + value)


def _ext(
    *,
    comp: dict[int, bytes] | None = None,
    sgx_type: bytes = der_tlv(0x0A, b"\0"),
    fmspc: tuple[bytes, ...] = (der_tlv(0x04, bytes(6)),),
    extra_tcb: bytes = b"",
) -> bytes:
    """An SGX extension of Intel's layout, each TCB component ``02 01 05`` unless ``comp`` gives
    its encoded INTEGER; ``fmspc`` items in order (two: a repeated item)."""
    enc = {n: der_tlv(0x02, b"\x05") for n in range(1, 18)} | (comp or {})
    tcb = b"".join(_item(f"2.{n}", enc[n]) for n in range(1, 18)) + extra_tcb
    tcb += _item("2.18", der_tlv(0x04, bytes(16)))
    return der_tlv(
        0x30,
        _item("1", der_tlv(0x04, bytes(16)))
        + _item("2", der_tlv(0x30, tcb))
        + _item("3", der_tlv(0x04, b"\0\0"))
        + b"".join(_item("4", f) for f in fmspc)
        + _item("5", sgx_type),
    )


def _readers(der: bytes, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The outcome of the whole-extension match, the TCB match and the generic reader."""
    out: list[object] = []
    for skip in ((), ("_ext_fast",), ("_ext_fast", "_tcb_fast")):
        with monkeypatch.context() as m:
            for name in skip:
                m.setattr(dcap_pck, name, lambda *_: None)
            try:
                out.append(dcap_pck.parse_pck_extension(der))
            except MalformedError as e:
                out.append(("refused", e.field, str(e)))
    return out


def test_the_builder_makes_what_the_readers_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _readers(_ext(comp={2: der_tlv(0x02, b"\x00\x80"), 3: der_tlv(0x02, b"\x7f")}),
                    monkeypatch)  # fmt: skip
    assert good[0] == good[1] == good[2]
    ext = good[0]
    assert isinstance(ext, dcap_pck.PckExtension)
    assert ext.tcb_components[:3] == (5, 128, 127)
    # The fakes' own extensions (DER) still read.
    assert isinstance(dcap_pck.parse_pck_extension(sgx_extension([0x80] * 16, 0x1234)),
                      dcap_pck.PckExtension)  # fmt: skip


BAD = {
    "negative one-octet INTEGER (02 01 80)": _ext(comp={2: der_tlv(0x02, b"\x80")}),
    "negative two-octet INTEGER": _ext(comp={4: der_tlv(0x02, b"\xff\x05")}),
    "INTEGER not in its shortest form (02 02 00 05)": _ext(comp={3: der_tlv(0x02, b"\x00\x05")}),
    "PCESVN not in its shortest form": _ext(comp={17: der_tlv(0x02, b"\x00\x0b")}),
    "ENUMERATED for an INTEGER": _ext(comp={5: der_tlv(0x0A, b"\x05")}),
    "INTEGER for the SGX type (ENUMERATED)": _ext(sgx_type=der_tlv(0x02, b"\0")),
    "negative SGX type": _ext(sgx_type=der_tlv(0x0A, b"\x81")),
    "repeated FMSPC item": _ext(fmspc=(der_tlv(0x04, b"\xaa" * 6), der_tlv(0x04, b"\xbb" * 6))),
    "repeated TCB component": _ext(extra_tcb=_item("2.1", der_tlv(0x02, b"\x09"))),
    "length in the long form for a short one (04 81 06)": _ext(fmspc=(b"\x04\x81\x06" + bytes(6),)),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_value_read_otherwise_by_der_is_refused_by_every_reader(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for outcome in _readers(BAD[name], monkeypatch):
        assert isinstance(outcome, tuple) and outcome[0] == "refused", (name, outcome)
        assert str(outcome[1]).startswith("pck_extension")
