"""The simulated platform: measurement, evidence format, verification, bad input."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee import evidence
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence import simulated
from veritee.platforms.simulated import SimulatedPlatform, load_or_create_platform_key, measure
from veritee.profiles import Profile

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
M = "ab" * 48


@pytest.fixture
def platform(tmp_path: Path) -> SimulatedPlatform:
    return SimulatedPlatform(tmp_path, measurement=M)


def test_measure_is_sha384_of_files_in_canonical_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    m1 = measure([a, b])
    assert len(bytes.fromhex(m1)) == 48
    assert measure([a, b]) == m1
    assert measure([b, a]) == m1  # sorted by relative path (veritee.platforms.measure)
    b.write_bytes(b"tw0")
    assert measure([a, b]) != m1
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_bytes(b"x")
    assert measure([d]) != measure([d / "x"])  # d/x and x are different relative paths
    with pytest.raises(UsageError):
        measure([])


def test_platform_key_is_per_install_and_private(tmp_path: Path) -> None:
    k1 = load_or_create_platform_key(tmp_path / "one")
    k2 = load_or_create_platform_key(tmp_path / "two")
    assert k1.private_numbers() != k2.private_numbers()
    assert load_or_create_platform_key(tmp_path / "one").private_numbers() == k1.private_numbers()
    assert (tmp_path / "one" / "platform_key.pem").stat().st_mode & 0o077 == 0


def test_round_trip_claims(platform: SimulatedPlatform) -> None:
    ev = platform.evidence(b"\x07" * 64)
    assert evidence.detect_format(ev) == "simulated"
    out = evidence.verify(ev, at=NOW)
    c = out.claims
    assert c["platform"] == "simulated"
    assert c["measurement"] == M
    assert c["report_data"] == "07" * 64
    assert c["debug"] is True and c["profile"] == "development"
    assert c["platform_key"] == platform.key_id
    assert c["tcb_status"] is None


def test_the_library_refuses_a_platform_key_that_vouches_for_itself(tmp_path: Path) -> None:
    """Issue 11 item 1: self-signed production evidence with any measurement is not accepted by
    the baseline unless its key is trusted by the caller (key id in ``trust``, or the PEM
    public key among the collateral)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.appraisal import appraise_baseline
    from veritee.collateral import Collateral

    p = SimulatedPlatform(tmp_path, measurement="00" * 48, profile=Profile.PRODUCTION)
    ev = p.evidence(b"\0" * 64)
    got = evidence.verify(ev, at=NOW)
    assert got.claims["platform_key_trusted"] is False
    d = appraise_baseline(got)
    assert not d.accepted and d.status == "contraindicated"
    assert [r.code for r in d.reasons] == ["platform_key_not_trusted"]
    for trusted in (evidence.verify(ev, at=NOW, trust=[p.key_id]),
                    evidence.verify(ev, at=NOW, collateral=Collateral(public_keys=(p._key.public_key(),)))):  # fmt: skip
        assert trusted.claims["platform_key_trusted"] is True
        d = appraise_baseline(trusted)
        assert d.accepted and d.status == "warning"  # simulated_platform: no hardware protection
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    untrusted = evidence.verify(ev, at=NOW, collateral=Collateral(public_keys=(other,)))
    assert not appraise_baseline(untrusted).accepted
    with pytest.raises(UsageError):
        evidence.verify(ev, at=NOW, trust=p.key_id)  # a bare string is not a set of ids


def test_production_profile_is_not_debuggable(tmp_path: Path) -> None:
    p = SimulatedPlatform(tmp_path, measurement=M, profile=Profile.PRODUCTION)
    c = evidence.verify(p.evidence(b"\0" * 64), at=NOW).claims
    assert c["profile"] == "production" and c["debug"] is False
    with pytest.raises(UsageError):
        SimulatedPlatform(tmp_path, measurement=M, profile=Profile.PRODUCTION, debug=True)


def test_every_flipped_byte_in_signed_region_is_refused(platform: SimulatedPlatform) -> None:
    ev = platform.evidence(b"\x01" * 64)
    report = simulated.SimulatedReport.from_bytes(ev)
    signed_len = len(report.signed)
    rng = random.Random(1234)
    positions = rng.sample(range(signed_len), min(300, signed_len))
    for pos in positions:
        bad = bytearray(ev)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises((MalformedError, VerificationError)):
            evidence.verify(bytes(bad), at=NOW, format="simulated")


def test_changed_signature_and_swapped_key(platform: SimulatedPlatform, tmp_path: Path) -> None:
    ev = platform.evidence(b"\x01" * 64)
    with pytest.raises(VerificationError, match="signature"):
        evidence.verify(ev[:-3] + bytes([ev[-3] ^ 0xFF]) + ev[-2:], at=NOW)
    other = SimulatedPlatform(tmp_path / "other", measurement=M)
    r1 = simulated.SimulatedReport.from_bytes(ev)
    r2 = simulated.SimulatedReport.from_bytes(other.evidence(b"\x01" * 64))
    swapped = ev.replace(r1.platform_key_der, r2.platform_key_der)
    with pytest.raises((VerificationError, MalformedError)):
        evidence.verify(swapped, at=NOW)


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 12, 16, 64, 127, 128, 130, 200, -1])
def test_truncated_evidence_names_field(platform: SimulatedPlatform, cut: int) -> None:
    ev = platform.evidence(b"\x01" * 64)
    data = ev[:cut] if cut >= 0 else ev + b"\0"
    with pytest.raises(MalformedError) as e:
        simulated.SimulatedReport.from_bytes(data)
    assert "field" in str(e.value) or "offset" in str(e.value)


def test_oversized_and_empty(platform: SimulatedPlatform) -> None:
    with pytest.raises(MalformedError, match="limit"):
        evidence.verify(b"VTSIMEV1" + b"\0" * (evidence.MAX_EVIDENCE_BYTES + 1), at=NOW)
    with pytest.raises(MalformedError, match="empty"):
        evidence.verify(b"", at=NOW)
    with pytest.raises(UsageError):
        evidence.verify(platform.evidence(b"\0" * 64), at=dt.datetime(2026, 1, 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    for candidate in (data, simulated.MAGIC + data):
        try:
            simulated.verify(candidate, collateral=evidence.Collateral.empty(), at=NOW)
        except (MalformedError, VerificationError):
            pass


def test_sealing_key_bound_to_measurement(tmp_path: Path) -> None:
    a = SimulatedPlatform(tmp_path, measurement=M)
    b = SimulatedPlatform(tmp_path, measurement="cd" * 48)
    assert a.sealing_key(b"x") != b.sealing_key(b"x")
    assert a.sealing_key(b"x") == SimulatedPlatform(tmp_path, measurement=M).sealing_key(b"x")
    assert a.sealing_key(b"x") != a.sealing_key(b"y")
