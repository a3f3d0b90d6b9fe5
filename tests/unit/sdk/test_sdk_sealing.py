"""Sealing: round trip, binding to measurement/platform/aad, tampered and truncated blobs."""

from __future__ import annotations

import pytest
from tests.unit.sdk.sdk_pki import HkdfPlatform, measurement_of

from veritee.errors import OversizedError, SealingError
from veritee.platforms.base import Platform
from veritee.sdk import sealing
from veritee.sdk.sealing import SealedHeader, seal, unseal


@pytest.fixture
def platform() -> HkdfPlatform:
    return HkdfPlatform(measurement_of("workload-a"))


def test_test_platform_implements_protocol(platform: HkdfPlatform) -> None:
    assert isinstance(platform, Platform)


@pytest.mark.parametrize("data", [b"", b"x", b"secret data " * 1000])
def test_round_trip(platform: HkdfPlatform, data: bytes) -> None:
    blob = seal(platform, data)
    if len(data) >= 12:
        assert data[:12] not in blob  # the plaintext is not in the clear
    assert unseal(platform, blob) == data


def test_round_trip_with_aad(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"payload", aad=b"purpose-1")
    assert unseal(platform, blob, aad=b"purpose-1") == b"payload"
    with pytest.raises(SealingError) as e:
        unseal(platform, blob, aad=b"purpose-2")
    assert e.value.code == "unseal_failed"


def test_each_blob_has_fresh_salt_and_nonce(platform: HkdfPlatform) -> None:
    a, b = seal(platform, b"same"), seal(platform, b"same")
    ha, hb = SealedHeader.from_bytes(a), SealedHeader.from_bytes(b)
    assert ha.salt != hb.salt and ha.nonce != hb.nonce and a != b
    assert ha.platform == "test-tee" and ha.version == sealing.VERSION


def test_other_measurement_cannot_unseal(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"only for workload-a")
    other = HkdfPlatform(measurement_of("workload-b"), secret=platform.secret)
    with pytest.raises(SealingError) as e:
        unseal(other, blob)
    assert e.value.code == "unseal_failed"
    assert "another measurement" in str(e.value)


def test_other_platform_install_cannot_unseal(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"only here")
    with pytest.raises(SealingError):
        unseal(HkdfPlatform(platform.measurement), blob)  # same measurement, other secret


def test_other_platform_name_refused_by_name(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"x")
    other = HkdfPlatform(platform.measurement, secret=platform.secret, name="sev-snp")
    with pytest.raises(SealingError) as e:
        unseal(other, blob)
    assert e.value.code == "sealed_other_platform"
    assert "'test-tee'" in str(e.value)


def test_every_flipped_byte_is_detected(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"tamper me")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(SealingError):
            unseal(platform, bytes(bad))


def test_every_truncation_is_detected(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"truncate me")
    for n in range(len(blob)):
        with pytest.raises(SealingError):
            unseal(platform, blob[:n])


def test_appended_bytes_are_detected(platform: HkdfPlatform) -> None:
    with pytest.raises(SealingError):
        unseal(platform, seal(platform, b"x") + b"\x00")


def test_header_errors_name_the_field(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"x")
    with pytest.raises(SealingError, match="magic"):
        unseal(platform, b"XXXX" + blob[4:])
    with pytest.raises(SealingError, match="version 9") as e:
        unseal(platform, blob[:4] + b"\x09" + blob[5:])
    assert e.value.code == "sealed_blob_version"
    with pytest.raises(SealingError, match="truncated"):
        unseal(platform, blob[:3])


@pytest.mark.parametrize("junk", [b"", b"\x00" * 100, bytes(range(256)), "not bytes", None, 42])
def test_junk_gives_sealing_error_only(platform: HkdfPlatform, junk: object) -> None:
    with pytest.raises(SealingError):
        unseal(platform, junk)  # type: ignore[arg-type]


def test_oversized_plaintext_refused(platform: HkdfPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealing, "MAX_PLAINTEXT", 16)
    with pytest.raises(OversizedError):
        seal(platform, b"x" * 17)


def test_with_simulated_platform(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from veritee.platforms.simulated import SimulatedPlatform

    a = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app-1"))
    same = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app-1"))
    other_meas = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app-2"))
    other_machine = SimulatedPlatform(tmp_path / "plat2", measurement=measurement_of("app-1"))
    blob = seal(a, b"simulated secret", aad=b"t")
    assert unseal(same, blob, aad=b"t") == b"simulated secret"
    for p in (other_meas, other_machine):
        with pytest.raises(SealingError):
            unseal(p, blob, aad=b"t")
