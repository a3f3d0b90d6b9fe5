"""A simulated report is read by one unpack of its head when it is well formed
(``simulated._well_formed``), else field by field (``SimulatedReport._read``): the two agree on
every report either accepts, and the unpack takes nothing the reader refuses."""

from __future__ import annotations

import datetime as dt

import pytest

from veritee.collateral import Collateral
from veritee.errors import MalformedError, VeriteeError
from veritee.evidence import simulated
from veritee.evidence.simulated import SimulatedReport, _well_formed
from veritee.platforms.simulated import SimulatedPlatform
from veritee.profiles import Profile

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _agree(data: bytes) -> None:
    fast = _well_formed(data)
    try:
        slow = SimulatedReport._read(data)
    except MalformedError as e:
        assert fast is None, f"the unpack took what the reader refuses ({e.message})"
        with pytest.raises(MalformedError) as got:
            SimulatedReport.from_bytes(data)
        assert (got.value.message, got.value.field, got.value.offset) == (
            e.message,
            e.field,
            e.offset,
        )
        return
    assert fast is None or (fast == slow and fast.__dict__ == slow.__dict__)
    assert all(type(v) is not memoryview for v in slow.__dict__.values())
    assert SimulatedReport.from_bytes(data) == slow


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = []
    for profile, debug in ((Profile.DEVELOPMENT, True), (Profile.PRODUCTION, False)):
        platform = SimulatedPlatform(
            tmp_path_factory.mktemp("sim"), measurement="ab" * 48, profile=profile, debug=debug
        )
        out.append(platform.evidence(bytes(range(64))))
    return out


def test_well_formed_reports_are_read_alike(reports: list[bytes]) -> None:
    for good in reports:
        fast = _well_formed(good)
        assert fast is not None and fast == SimulatedReport._read(good)
        assert fast.claims() == SimulatedReport._read(good).claims()
        assert isinstance(fast.signed, bytes) and isinstance(fast.platform_key_der, bytes)


def test_every_byte_mutation_is_read_alike(reports: list[bytes]) -> None:
    for good in reports:
        for i in range(len(good)):
            for value in {good[i] ^ 0x01, good[i] ^ 0x80, 0x00, 0xFF}:
                bad = bytearray(good)
                bad[i] = value
                _agree(bytes(bad))


def test_cut_and_extended_reports_are_read_alike(reports: list[bytes]) -> None:
    for good in reports:
        for n in range(len(good) + 1):
            _agree(good[:n])
        for tail in (b"\x00", b"\x01\x02", bytes(200)):
            _agree(good + tail)
        key_len = int.from_bytes(good[0x80:0x82], "little")
        for length in (0, 1, key_len - 1, key_len + 1, simulated.MAX_KEY_LEN + 1, 0xFFFF):
            bad = bytearray(good)
            bad[0x80:0x82] = length.to_bytes(2, "little")
            _agree(bytes(bad))
        end = 0x82 + key_len
        for length in (0, 1, simulated.MAX_SIG_LEN + 1, 0xFFFF):
            bad = bytearray(good)
            bad[end : end + 2] = length.to_bytes(2, "little")
            _agree(bytes(bad))


def test_other_byte_types_go_the_reader_way(reports: list[bytes]) -> None:
    good = reports[0]
    for data in (bytearray(good), memoryview(good)):
        assert SimulatedReport.from_bytes(data) == SimulatedReport._read(good)  # type: ignore[arg-type]


def test_tampered_evidence_is_refused_with_the_key_kept(reports: list[bytes]) -> None:
    good = reports[0]
    collateral = Collateral.empty()
    claims = simulated.verify(good, collateral=collateral, at=AT).claims
    assert claims["platform_key"] == SimulatedReport.from_bytes(good).platform_key_id
    for where in range(0, len(good), 7):
        bad = bytearray(good)
        bad[where] ^= 0x04
        with pytest.raises(VeriteeError):
            simulated.verify(bytes(bad), collateral=collateral, at=AT)
        assert simulated.verify(good, collateral=collateral, at=AT).claims == claims
