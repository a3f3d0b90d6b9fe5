"""The quote's fast paths (issue 15 item 2): v4/v5 signature data read in three unpacks, and the
frozen dataclasses built without their generated ``__init__`` (:mod:`veritee._frozen`). Each
gives exactly what the field-by-field reader and the dataclass constructors give, and refuses
(with the same error) whatever they refuse."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from tests.conftest import TESTVECTORS

from veritee._frozen import maker
from veritee.errors import MalformedError
from veritee.evidence import dcap, dcap_pck, dcap_quote, tdx

QUOTES = [
    "tdx/dcapqvl_tdx_quote_v4.bin",
    "tdx/dcapqvl_tdx_quote_v5_outdated.bin",
    "tdx/trustee_tdx_quote_5_v5.bin",
    "tdx/gotdxguest_tdx_prod_quote_SPR_E4_v4.bin",
    "sgx/dcapqvl_sgx_quote_v3.bin",
]


def _quotes() -> list[bytes]:
    found = [TESTVECTORS / q for q in QUOTES if (TESTVECTORS / q).is_file()]
    if not found:
        pytest.skip("no DCAP quote test vectors")
    return [p.read_bytes() for p in found]


def _outcome(data: bytes) -> object:
    try:
        q = dcap.parse_quote(data)
    except MalformedError as e:
        return ("refused", e.field, e.offset, e.message)
    return (q, q.header.__dict__, q.signature_data.__dict__, q.signature_data.qe_report.__dict__)


def _slow(data: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as m:
        m.setattr(dcap_quote, "_signature_data_v4", lambda *_: None)
        m.setattr(dcap_quote, "_quote_v4_tdx", lambda *_: None)
        return _outcome(data)


def _sig_start(data: bytes) -> int:
    q = dcap.parse_quote(data)
    return len(q.signed) + 4


def test_fast_and_field_by_field_reads_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    for data in _quotes():
        fast = _outcome(data)
        assert not isinstance(fast, tuple) or fast[0] != "refused"
        assert fast == _slow(data, monkeypatch)
        if data[0] >= 4:  # the fast read was taken
            q = dcap.parse_quote(data)
            assert dcap_quote._signature_data_v4(data, _sig_start(data), q.end) == q.signature_data
        if data[0] == 4 and data[4] == 0x81:
            assert dcap_quote._quote_v4_tdx(data) == dcap.parse_quote(data)


def test_fast_read_agrees_on_every_change_of_the_framing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every byte of the signature data's types, sizes and lengths, and of the quote's own
    signature data length, changed in either direction: the same quote or the same refusal."""
    for data in _quotes():
        start = _sig_start(data)
        if data[0] == 3:
            continue  # v3: the field-by-field reader only
        auth_len = struct.unpack_from("<H", data, start + 128 + 6 + 384 + 64)[0]
        pck_head = start + 128 + 6 + 384 + 64 + 2 + auth_len
        spots = [*range(8), *range(start - 4, start), *range(start + 128, start + 134),
                 start + 582, start + 583, *range(pck_head, pck_head + 6)]  # fmt: skip
        for at in spots:
            for delta in (1, -1, 0x80):
                bad = data[:at] + bytes([(data[at] + delta) & 0xFF]) + data[at + 1 :]
                assert _outcome(bad) == _slow(bad, monkeypatch), (at, delta)
        for cut in (1, 6, auth_len + 10, len(data) - start - 1):
            short = data[: len(data) - cut]
            assert _outcome(short) == _slow(short, monkeypatch), cut


def test_fast_read_is_for_bytes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _quotes()[0]
    assert _outcome(bytearray(data))[0] == _outcome(data)[0]


@pytest.mark.parametrize(
    "cls",
    [dcap_quote.QuoteHeader, dcap_quote.EnclaveReport, dcap_quote.QuoteSignatureData,
     dcap_quote.Quote, dcap_pck.PckExtension, tdx.TdReport],
)  # fmt: skip
def test_maker_builds_what_the_constructor_builds(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    values = [(i, name) for i, name in enumerate(names)]
    made, built = maker(cls)(*values), cls(*values)
    assert type(made) is cls
    assert made == built and hash(made) == hash(built) and made.__dict__ == built.__dict__
    assert repr(made) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(names[0], 1)
    with pytest.raises(TypeError):
        maker(cls)(*values[:-1])


def test_maker_refuses_what_it_cannot_build() -> None:
    @dataclasses.dataclass
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True)
    class NoInit:
        a: int
        b: int = dataclasses.field(default=0, init=False)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    for cls in (Mutable, Post, NoInit, Slotted, int):
        with pytest.raises(TypeError):
            maker(cls)
