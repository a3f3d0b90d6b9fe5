"""Event-log data bound to its digest (issue 11, item 6), on real logs: the TDX CCEL of a GCE COS
TD and the TCG log of a GCE COS vTPM (go-tpm-tools' attestation). Replay binds digests only; an
event's data counts as verified only where its digest is H(data) (go-eventlog's DigestVerified,
GRUB's prefix rule), events whose digest the PC Client PFP defines over their data must hash to
it, and every other event's data is marked unverified in the claims."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS
from tests.fakes.intel import AT as DCAP_AT
from tests.fakes.intel import Spec, build
from tests.fakes.tpm_sample import decode_fields, encode_fields, sample_bytes, verify_claims

from veritee.errors import MalformedError, VerificationError
from veritee.evidence import ccel, tcg_log, tdx

TABLE = TESTVECTORS / "tdx" / "gotdxguest_ccel_table.dat"
pytestmark = pytest.mark.skipif(
    not TABLE.is_file(), reason="test vectors absent (../shared/testvectors)"
)


@functools.cache
def _ccel() -> tuple[bytes, bytes]:
    return TABLE.read_bytes(), (TESTVECTORS / "tdx" / "gotdxguest_ccel_data.dat").read_bytes()


def _tpm_log() -> bytes:
    log = next(v for n, v in decode_fields(sample_bytes()) if n == 3)
    assert isinstance(log, bytes)
    return log


def _with_tpm_log(log: bytes) -> bytes:
    return encode_fields([(n, log if n == 3 else v) for n, v in decode_fields(sample_bytes())])


def _data_spans(log: bytes) -> list[tuple[int, int, int]]:
    """(start, end, event type) of each non-empty event's data in ``log``."""
    events = tcg_log.parse(log, max_index=23).events
    out = []
    for i, e in enumerate(events):
        end = events[i + 1].offset if i + 1 < len(events) else len(log)  # data ends the event
        if e.data and e.type != tcg_log.EV_NO_ACTION:
            out.append((end - len(e.data), end, e.type))
    return out


def _edit(log: bytes, old: bytes, new: bytes) -> bytes:
    """``log`` with ``old`` replaced by ``new`` in the data of the one event whose data holds
    ``old`` first (same length: event sizes and every digest stay, so the replay is unchanged)."""
    assert len(old) == len(new)
    for start, end, _ in _data_spans(log):
        if old in log[start:end]:
            return log[:start] + log[start:end].replace(old, new, 1) + log[end:]
    raise AssertionError(f"no event holds {old!r}")


def _event(claims: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    return next(
        e for e in claims if (e.get("text") or e.get("unverified_text") or "").startswith(prefix)
    )


def test_an_edited_kernel_command_line_no_longer_passes_as_verified_ccel() -> None:
    table, data = _ccel()
    log = ccel.replay(table, data)
    cmdline = _event(log.claims(), "kernel_cmdline: ")
    assert (
        cmdline["data_verified"] is True and "text" in cmdline and "unverified_text" not in cmdline
    )
    edited = _edit(
        data,
        b"kernel_cmdline: /syslinux/vmlinuz.A init",
        b"kernel_cmdline: /syslinux/vmlinuz.B init",
    )
    elog = ccel.replay(table, edited)
    assert elog.rtmrs == log.rtmrs  # the replay cannot see it
    bad = _event(elog.claims(), "kernel_cmdline: ")
    assert bad["data_verified"] is False and "text" not in bad
    assert "vmlinuz.B" in bad["unverified_text"]
    # Through the TDX verifier: the quote's RTMRs still match, the command line is unverified.
    syn = build(Spec(rtmrs=log.rtmrs))
    v = tdx.verify_with_event_log(syn.quote, edited, table=table, collateral=syn.collateral, at=DCAP_AT,
                                  trust=syn.trust)  # fmt: skip
    assert v.claims["rtmr_replay_ok"] is True
    assert _event(v.claims["event_log"], "kernel_cmdline: ")["data_verified"] is False


def test_an_edited_kernel_command_line_no_longer_passes_as_verified_tpm() -> None:
    good = verify_claims(sample_bytes())["event_log"]
    cmd = _event(good["entries"], "kernel_cmdline: ")
    assert cmd["data_verified"] is True and cmd["index"] == 8
    edited = verify_claims(_with_tpm_log(_edit(_tpm_log(), b"kernel_cmdline: /syslinux/vmlinuz.A init",
                                         b"kernel_cmdline: /syslinux/vmlinuz.B init")))  # fmt: skip
    assert (
        edited["event_log"]["verified"] is True
        and edited["pcr8"] == verify_claims(sample_bytes())["pcr8"]
    )
    bad = _event(edited["event_log"]["entries"], "kernel_cmdline: ")
    assert (
        bad["data_verified"] is False
        and "text" not in bad
        and "vmlinuz.B" in bad["unverified_text"]
    )


def test_events_whose_digest_is_defined_over_their_data_must_hash_to_it() -> None:
    # EV_EFI_ACTION (PFP: the digest is the hash of the action string), in both logs.
    with pytest.raises(VerificationError) as e:
        verify_claims(_with_tpm_log(_edit(_tpm_log(), b"Calling EFI Application from Boot Option",
                                    b"Calling EFI Application from Boot 0ption")))  # fmt: skip
    assert e.value.code == "event_data_mismatch" and "EV_EFI_ACTION" in e.value.message
    table, data = _ccel()
    with pytest.raises(VerificationError) as e:
        ccel.replay(
            table, _edit(data, b"Exit Boot Services Invocation", b"Exit Boot Services Invocatiom")
        )
    assert e.value.code == "event_data_mismatch"


def test_a_separator_with_other_data_is_refused() -> None:
    start, end, _ = next(sp for sp in _data_spans(_tpm_log()) if sp[2] == tcg_log.EV_SEPARATOR)
    raw = bytearray(_tpm_log())
    assert end - start == 4 and raw[start:end] in (b"\0" * 4, b"\xff" * 4)
    raw[start] ^= 1
    with pytest.raises(VerificationError) as e:
        verify_claims(_with_tpm_log(bytes(raw)))
    assert e.value.code == "event_data_mismatch" and "EV_SEPARATOR" in e.value.message


def test_unbound_event_types_are_marked_unverified() -> None:
    table, data = _ccel()
    claims = ccel.replay(table, data).claims()
    apps = [e for e in claims if e["type_name"] == "EV_EFI_BOOT_SERVICES_APPLICATION"]
    assert apps and all(e["data_verified"] is False and "text" not in e for e in apps)
    # The shim stray-byte EV_EFI_VARIABLE_AUTHORITY events of the GCE log are accepted as
    # go-eventlog accepts them; a bare H(data) match is the ordinary case.
    entries = verify_claims(sample_bytes())["event_log"]["entries"]
    auth = [e for e in entries if e["type_name"] == "EV_EFI_VARIABLE_AUTHORITY"]
    assert len(auth) == 3 and all(e["data_verified"] for e in auth)


def test_a_grub_command_needs_its_prefix_to_be_read_as_one() -> None:
    table, data = _ccel()
    edited = _edit(data, b"grub_cmd: set timeout=0", b"grub_cmX: set timeout=0")
    ev = _event(ccel.replay(table, edited).claims(), "grub_cmX: ")
    assert ev["data_verified"] is False


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_change_to_event_data_is_refused_or_unverified(data: st.DataObject) -> None:
    log = _tpm_log()
    spans = _data_spans(log)
    start, end, etype = data.draw(st.sampled_from(spans), label="event")
    pos = data.draw(st.integers(start, end - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    raw = bytearray(log)
    raw[pos] ^= flip
    try:
        claims = verify_claims(_with_tpm_log(bytes(raw)))
    except VerificationError as e:
        assert e.code == "event_data_mismatch" and etype in tcg_log.DATA_BOUND
        return
    except MalformedError:
        return  # e.g. a UEFI_VARIABLE_DATA length that no longer parses
    entries = claims["event_log"]["entries"]
    index = [s for s, _, _ in spans].index(start)
    changed = [e for e in entries if e["type"] != tcg_log.EV_NO_ACTION and e["data_size"]][index]
    if changed["data_verified"] and etype == tcg_log.EV_EFI_VARIABLE_AUTHORITY and pos == end - 1:
        # The stray byte older shim logs after a bare certificate, outside the digest (accepted
        # as go-eventlog accepts it): nothing in the claims may come from it.
        assert claims == _sample_claims()
        return
    assert changed["data_verified"] is False and "text" not in changed


@functools.cache
def _sample_claims() -> dict[str, Any]:
    return verify_claims(sample_bytes())


def test_a_shim_stray_byte_changes_nothing_in_the_claims() -> None:
    """Hypothesis found it: the last byte of a stray-byte EV_EFI_VARIABLE_AUTHORITY event is not
    measured, so flipping it leaves the event verified; the claims must be those of the log as
    it came, byte for byte."""
    log = _tpm_log()
    strays = [(s, e) for s, e, t in _data_spans(log) if t == tcg_log.EV_EFI_VARIABLE_AUTHORITY]
    accepted = 0
    for _, end in strays:
        raw = bytearray(log)
        raw[end - 1] ^= 1
        try:
            claims = verify_claims(_with_tpm_log(bytes(raw)))
        except VerificationError as e:
            assert e.code == "event_data_mismatch"  # an ordinary event: its digest covers it
            continue
        accepted += 1
        assert claims == _sample_claims()
    assert accepted == 2  # the GCE sample's two shim events with the stray byte
