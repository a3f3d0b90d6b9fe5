"""veritee.binding: which profile evidence attests (DESIGN.md, "Profiles are attested")."""

from __future__ import annotations

from typing import Any

import pytest

from veritee.binding import LAUNCH_DATA_CLAIMS, attested_profile, profile_launch_data
from veritee.profiles import Profile


def _claims(platform: str, launch: bytes | None, *, debug: Any = False) -> dict[str, Any]:
    c: dict[str, Any] = {"platform": platform, "debug": debug, "measurement": "ab" * 48}
    if launch is not None:
        c[LAUNCH_DATA_CLAIMS[platform][0]] = launch.hex()
    return c


@pytest.mark.parametrize("platform", sorted(LAUNCH_DATA_CLAIMS))
@pytest.mark.parametrize("profile", list(Profile))
def test_launch_data_attests_the_profile(platform: str, profile: Profile) -> None:
    size = LAUNCH_DATA_CLAIMS[platform][1]
    launch = profile_launch_data(profile, size)
    assert len(launch) == size
    assert attested_profile(_claims(platform, launch)) is profile
    # The same launch data in a debug launch never attests more than a debugger allows.
    debug = attested_profile(_claims(platform, launch, debug=True))
    assert debug is (profile if profile.allows_debug else Profile.DEVELOPMENT)


@pytest.mark.parametrize("platform", sorted(LAUNCH_DATA_CLAIMS))
def test_other_or_missing_launch_data_is_development(platform: str) -> None:
    size = LAUNCH_DATA_CLAIMS[platform][1]
    prod = profile_launch_data(Profile.PRODUCTION, size)
    for launch in (None, bytes(size), b"\x01" * size, prod[:-1] + b"\x01", prod[: size - 1]):
        assert attested_profile(_claims(platform, launch)) is Profile.DEVELOPMENT
    assert attested_profile({**_claims(platform, prod), LAUNCH_DATA_CLAIMS[platform][0]: 7}) \
        is Profile.DEVELOPMENT  # fmt: skip


def test_launch_data_of_one_size_does_not_count_for_another() -> None:
    snp_tag = profile_launch_data(Profile.PRODUCTION, 32)
    claims = {"platform": "tdx", "debug": False, "mr_config_id": snp_tag.hex()}
    assert attested_profile(claims) is Profile.DEVELOPMENT


@pytest.mark.parametrize("profile", list(Profile))
def test_simulated_profile_is_the_signed_field(profile: Profile) -> None:
    claims = {"platform": "simulated", "profile": profile.value, "debug": False}
    assert attested_profile(claims) is profile
    assert attested_profile({**claims, "debug": True}) is (
        profile if profile.allows_debug else Profile.DEVELOPMENT
    )


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"platform": "nitro", "debug": False},
        {"platform": "sgx", "debug": False},
        {"platform": "tpm", "debug": False},
        {"platform": "simulated", "profile": "root", "debug": False},
        {"platform": "simulated", "profile": "production"},  # no debug claim: fails closed
        {"platform": 3, "debug": False},
    ],
)
def test_everything_else_is_development(claims: dict[str, Any]) -> None:
    assert attested_profile(claims) is Profile.DEVELOPMENT


def test_launch_data_needs_room() -> None:
    with pytest.raises(ValueError):
        profile_launch_data(Profile.PRODUCTION, 16)
