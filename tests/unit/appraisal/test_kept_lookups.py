"""A policy's platform section and a simulated report's profile are found in dicts made once:
the same answers as the enums' own look-ups, for every value and for names they refuse."""

from __future__ import annotations

from typing import Any

import pytest

from veritee.appraisal.policy import Platforms, SimulatedPolicy
from veritee.binding import attested_profile
from veritee.profiles import Profile
from veritee.tee import Tee

ODD = [
    "",
    "SIMULATED",
    "Simulated",
    "sev_snp",
    "nvidia_gpu",
    "simulated ",
    "None",
    "unknown",
    "tdx\x00",
]


def test_every_section_is_found_as_by_the_enum() -> None:
    platforms = Platforms(simulated=SimulatedPolicy(measurements=["ab" * 48]))
    for name in [t.value for t in Tee] + list(Tee) + ODD:
        try:
            want = getattr(platforms, Tee(name).policy_section)
        except ValueError:
            want = None
        assert platforms.for_platform(name) is want
    assert platforms.for_platform("simulated") is platforms.simulated is not None
    assert platforms.for_platform("tdx") is None


def _old_rule(claims: dict[str, Any]) -> Profile:
    try:
        profile = Profile(str(claims.get("profile")))
    except ValueError:
        profile = Profile.DEVELOPMENT
    if claims.get("debug") is not False and not profile.allows_debug:
        return Profile.DEVELOPMENT
    return profile


@pytest.mark.parametrize("debug", [False, True, None, 0, "false"])
def test_a_simulated_profile_is_read_as_by_the_enum(debug: Any) -> None:
    for value in [p.value for p in Profile] + list(Profile) + ODD + [None, 3, ["production"]]:
        claims = {"platform": "simulated", "profile": value, "debug": debug}
        assert attested_profile(claims) is _old_rule(claims)
