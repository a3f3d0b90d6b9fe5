"""Sealing: round trip, binding to measurement/platform/profile/debug/purpose/context, tampered
and truncated blobs, and version-1 blobs made before issue 13."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
from tests.platform_contract import check_platform_contract
from tests.unit.sdk.sdk_pki import HkdfPlatform, measurement_of

from veritee.errors import OversizedError, SealingError, UsageError
from veritee.platforms.base import Platform
from veritee.platforms.simulated import SimulatedPlatform
from veritee.profiles import Profile
from veritee.sdk import sealing
from veritee.sdk.sealing import PURPOSE_APP, SealedHeader

seal = functools.partial(sealing.seal, purpose=PURPOSE_APP)
unseal = functools.partial(sealing.unseal, purpose=PURPOSE_APP)
V1 = Path(__file__).resolve().parents[2] / "data" / "sealed-v1"


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


def test_round_trip_with_context(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"payload", context=b"file-1")
    assert unseal(platform, blob, context=b"file-1") == b"payload"
    for other in (b"file-2", b""):
        with pytest.raises(SealingError) as e:
            unseal(platform, blob, context=other)
        assert e.value.code == "unseal_failed"


def test_purpose_is_bound_and_named(platform: HkdfPlatform) -> None:
    blob = sealing.seal(platform, b"payload", purpose="db-backup")
    assert sealing.unseal(platform, blob, purpose="db-backup") == b"payload"
    assert SealedHeader.from_bytes(blob).purpose == "db-backup"
    with pytest.raises(SealingError) as e:
        sealing.unseal(platform, blob, purpose="app")
    assert e.value.code == "sealed_purpose_mismatch" and "'db-backup'" in str(e.value)
    # Rewriting the stored purpose does not help: the header is authenticated.
    forged = blob.replace(b"db-backup", b"app-backu", 1)
    with pytest.raises(SealingError) as e:
        sealing.unseal(platform, forged, purpose="app-backu")
    assert e.value.code == "unseal_failed"


@pytest.mark.parametrize("purpose", ["", "App", "-x", "a" * 65, "a b", "é"])
def test_malformed_purpose_is_a_usage_error(platform: HkdfPlatform, purpose: str) -> None:
    with pytest.raises(UsageError):
        sealing.seal(platform, b"x", purpose=purpose)


def test_reserved_purposes_are_not_application_purposes() -> None:
    for p in ("veritee.keystore", "veritee.log-pending", "veritee"):
        with pytest.raises(UsageError) as e:
            sealing.check_app_purpose(p)
        assert e.value.code == "sealing_purpose_reserved"
    assert sealing.check_app_purpose("app") == "app"


def test_oversized_context_refused(platform: HkdfPlatform) -> None:
    with pytest.raises(OversizedError):
        seal(platform, b"x", context=b"c" * (sealing.MAX_CONTEXT + 1))
    with pytest.raises(UsageError):
        seal(platform, b"x", context="text")  # type: ignore[arg-type]


def test_profile_and_debug_are_bound(platform: HkdfPlatform) -> None:
    blob = seal(platform, b"production state")
    hdr = SealedHeader.from_bytes(blob)
    assert hdr.profile is Profile.PRODUCTION and hdr.debug is False
    for profile, debug in ((Profile.STAGING, False), (Profile.DEVELOPMENT, True)):
        other = HkdfPlatform(
            platform.measurement, secret=platform.secret, profile=profile, debug=debug
        )
        with pytest.raises(SealingError) as e:
            unseal(other, blob)
        assert e.value.code == "sealed_other_profile"
        # A header rewritten to the other instance's profile fails authentication instead.
        forged = bytearray(blob)
        forged[sealing.OFF_PROFILE] = sealing.PROFILE_CODES[profile]
        forged[sealing.OFF_FLAGS] = sealing.FLAG_DEBUG if debug else 0
        with pytest.raises(SealingError) as e:
            unseal(other, bytes(forged))
        assert e.value.code == "unseal_failed"


def test_simulated_platform_meets_the_contract(tmp_path: Path) -> None:
    check_platform_contract(
        lambda m, profile, debug: SimulatedPlatform(
            tmp_path / "plat", measurement=m, profile=profile, debug=debug
        )
    )


def test_test_platform_meets_the_contract() -> None:
    secret = b"s" * 32
    check_platform_contract(
        lambda m, profile, debug: HkdfPlatform(m, secret=secret, profile=profile, debug=debug)
    )


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
    with pytest.raises(SealingError, match="profile code 7"):
        unseal(platform, blob[:5] + b"\x07" + blob[6:])
    with pytest.raises(SealingError, match="flag bits"):
        unseal(platform, blob[:6] + b"\x80" + blob[7:])
    with pytest.raises(SealingError, match="purpose length 0"):
        n = blob[sealing.OFF_NAME_LEN]
        at = sealing.OFF_NAME + n
        unseal(platform, blob[:at] + b"\x00" + blob[at + 1 :])
    assert e.value.code == "sealed_blob_version"
    with pytest.raises(SealingError, match="truncated"):
        unseal(platform, blob[:3])


@pytest.mark.parametrize("junk", [b"", b"\x00" * 100, bytes(range(256)), "not bytes", None, 42])
def test_junk_gives_sealing_error_only(platform: HkdfPlatform, junk: object) -> None:
    with pytest.raises(SealingError):
        unseal(platform, junk)  # type: ignore[arg-type]


def test_oversized_plaintext_refused(
    platform: HkdfPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealing, "MAX_PLAINTEXT", 16)
    with pytest.raises(OversizedError):
        seal(platform, b"x" * 17)


def test_with_simulated_platform(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from veritee.platforms.simulated import SimulatedPlatform

    a = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app-1"))
    same = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app-1"))
    other_meas = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app-2"))
    other_machine = SimulatedPlatform(tmp_path / "plat2", measurement=measurement_of("app-1"))
    blob = seal(a, b"simulated secret", context=b"t")
    assert unseal(same, blob, context=b"t") == b"simulated secret"
    for p in (other_meas, other_machine):
        with pytest.raises(SealingError):
            unseal(p, blob, context=b"t")


def _v1_platform(tmp_path: Path, profile: Profile = Profile.PRODUCTION) -> SimulatedPlatform:
    shutil.copytree(V1 / "platform", tmp_path / "platform", dirs_exist_ok=True)
    m = (V1 / "measurement.txt").read_text().strip()
    return SimulatedPlatform(tmp_path / "platform", measurement=m, profile=profile)


def test_version_1_blob_still_opens(tmp_path: Path) -> None:
    p = _v1_platform(tmp_path)
    blob = (V1 / "app.sealed").read_bytes()
    assert SealedHeader.from_bytes(blob).version == 1
    assert unseal(p, blob) == b"sealed by veritee 0.x, format 1"
    with pytest.raises(SealingError):
        unseal(p, blob, context=b"other")
    with pytest.raises(SealingError) as e:  # purposes named since then have no v1 blobs
        sealing.unseal(p, blob, purpose="db-backup")
    assert e.value.code == "sealed_purpose_mismatch"
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(SealingError):
            unseal(p, bytes(bad))


def test_version_1_key_store_blob_is_not_an_application_blob(tmp_path: Path) -> None:
    p = _v1_platform(tmp_path)
    blob = (V1 / "keystore.sealed").read_bytes()
    with pytest.raises(SealingError):
        unseal(p, blob)
    with pytest.raises(SealingError) as e:
        unseal(p, blob, context=sealing.LEGACY_KEYSTORE_AAD)
    assert e.value.code == "sealed_purpose_mismatch"
    assert sealing.unseal(p, blob, purpose=sealing.PURPOSE_KEYSTORE)


def test_version_1_blob_needs_a_driver_that_can_open_it(platform: HkdfPlatform) -> None:
    blob = (V1 / "app.sealed").read_bytes()
    other = HkdfPlatform(platform.measurement, name="simulated")
    with pytest.raises(SealingError) as e:
        unseal(other, blob)
    assert e.value.code == "sealed_blob_version"
