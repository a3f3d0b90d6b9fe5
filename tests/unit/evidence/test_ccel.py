"""CCEL event log replay against the GCE COS TDX quote, and with a synthetic verified quote."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import testvectors_dir as tv_dir
from tests.fakes.intel import AT, Spec, build

from veritee.errors import MalformedError, VerificationError
from veritee.evidence import ccel, tcg_log, tdx


def _files() -> tuple[bytes, bytes, bytes]:
    d: Path = tv_dir() / "tdx"
    return (
        (d / "gotdxguest_ccel_table.dat").read_bytes(),
        (d / "gotdxguest_ccel_data.dat").read_bytes(),
        (d / "gotdxguest_ccel_cos-113-tdx-quote_v4.bin").read_bytes(),
    )


def test_replay_matches_quote_rtmrs() -> None:
    table, data, quote = _files()
    t = ccel.parse_table(table)
    assert t.cc_type == 2 and t.laml == len(data)
    log = ccel.replay(table, data)
    claims = tdx.parse_claims(quote)
    assert [r.hex() for r in log.rtmrs] == [claims[f"rtmr{i}"] for i in range(4)]
    events = log.claims()
    assert len(events) == len(log.events) > 10
    assert {e["rtmr"] for e in events} <= {0, 1, 2, 3}
    assert any(e.get("text", "").startswith("grub_cmd: linux") for e in events)
    assert all(len(e["digest"]) == 96 for e in events)


def test_tampered_event_changes_replay() -> None:
    table, data, _quote = _files()
    log = ccel.replay(table, data)
    # Flip one byte of an event's SHA-384 digest (after index, type, count, alg id): the replay
    # changes; and where the digest is defined over the data, the event is refused outright.
    for ev in (next(e for e in log.events if e.type not in tcg_log.DATA_BOUND and e.index),
               next(e for e in log.events if e.type in tcg_log.DATA_BOUND)):  # fmt: skip
        pos = ev.offset + 4 + 4 + 4 + 2
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        if ev.type in tcg_log.DATA_BOUND:
            with pytest.raises(VerificationError, match="does not hash"):
                ccel.replay(table, bytes(bad))
        else:
            assert ccel.replay(table, bytes(bad)).rtmrs != log.rtmrs


def test_verify_with_event_log_on_synthetic_quote() -> None:
    table, data, _ = _files()
    log = ccel.replay(table, data)
    syn = build(Spec(rtmrs=log.rtmrs))
    v = tdx.verify_with_event_log(
        syn.quote, data, table=table, collateral=syn.collateral, at=AT, trust=syn.trust
    )
    assert v.claims["rtmr_replay_ok"] is True
    assert len(v.claims["event_log"]) == len(log.events)
    other = build(Spec(rtmrs=(log.rtmrs[0], bytes(48), log.rtmrs[2], log.rtmrs[3])))
    with pytest.raises(VerificationError) as e:
        tdx.verify_with_event_log(
            other.quote, data, table=table, collateral=other.collateral, at=AT, trust=other.trust
        )
    assert e.value.code == "event_log_mismatch" and "RTMR1" in str(e.value)


def test_malformed_tables_and_logs() -> None:
    table, data, _ = _files()
    with pytest.raises(MalformedError) as e:
        ccel.parse_table(b"XCEL" + table[4:])
    assert e.value.field == "ccel.signature"
    bad = bytearray(table)
    bad[20] ^= 1
    with pytest.raises(MalformedError) as e:
        ccel.parse_table(bytes(bad))
    assert e.value.field == "ccel.checksum"
    with pytest.raises(MalformedError):
        ccel.parse_event_log(data[:40])
    log = ccel.replay(table, data)
    cut = log.events[3].offset + 20
    with pytest.raises(MalformedError) as e:
        ccel.parse_event_log(data[:cut])
    assert e.value.offset is not None
    # An index beyond RTMR3 is refused.
    ev = log.events[0].offset
    bad = bytearray(data)
    struct.pack_into("<I", bad, ev, 9)
    with pytest.raises(MalformedError) as e:
        ccel.parse_event_log(bytes(bad))
    assert e.value.field == "event.index"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20000), st.binary(min_size=1, max_size=8))
def test_fuzzed_logs_never_crash(pos: int, junk: bytes) -> None:
    _, data, _ = _files()
    blob = data[:pos] + junk + data[pos + len(junk) : 30000]
    try:
        ccel.parse_event_log(blob)
    except MalformedError as e:
        assert e.field is not None
    except VerificationError as e:
        assert e.code == "event_data_mismatch"


def _event(index: int, etype: int, data: bytes) -> bytes:
    """One crypto-agile event of one SHA-384 digest, defined over ``data``."""
    import hashlib

    return (
        struct.pack("<IIIH", index, etype, 1, 0x000C)
        + hashlib.sha384(data).digest()
        + struct.pack("<I", len(data))
        + data
    )


def test_an_event_at_mrtd_is_refused_not_reported_verified() -> None:
    """No event extends MRTD (index 0): one there was never replayed, yet its data was shown as
    verified. Written into the real log's unused tail (the table kept), such events made up a
    kernel command line and a Secure Boot state beside a replay that still matched the quote."""
    table, data, _ = _files()
    log = ccel.replay(table, data)
    last = log.events[-1]
    end = last.offset + 4 + 4 + 4 + 2 + 48 + 4 + len(last.data)
    for etype, payload in ((tcg_log.EV_IPL, b"kernel_cmdline: init=/bin/evil.sh"),
                           (tcg_log.EV_EFI_ACTION, b"Secure Boot enforced")):  # fmt: skip
        fake = _event(0, etype, payload)
        assert set(data[end : end + len(fake)]) == {0xFF}  # the log area's unused tail
        edited = data[:end] + fake + data[end + len(fake) :]
        with pytest.raises(MalformedError) as e:
            ccel.replay(table, edited)
        assert e.value.field == "event.index" and "MRTD" in str(e.value)
        syn = build(Spec(rtmrs=log.rtmrs))
        with pytest.raises(MalformedError):
            tdx.verify_with_event_log(
                syn.quote, edited, table=table, collateral=syn.collateral, at=AT, trust=syn.trust
            )
    # The same event at RTMR3 (index 4) is replayed: the replay no longer matches the quote.
    rtmr3 = _event(4, tcg_log.EV_IPL, b"x")
    edited = data[:end] + rtmr3 + data[end + len(rtmr3) :]
    assert ccel.replay(table, edited).rtmrs[3] != log.rtmrs[3]
