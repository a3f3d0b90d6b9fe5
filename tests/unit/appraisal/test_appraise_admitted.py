"""appraise_admitted: an admission certificate's claims under the policy in force (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from veritee.appraisal import appraise_admitted
from veritee.appraisal.evaluate import MEASUREMENT_PINS
from veritee.appraisal.policy import parse_policy

M, N = "ab" * 48, "cd" * 48


def _policy(platform: str, field: str, allowed: list[str] | None, **extra: Any) -> Any:
    section: dict[str, Any] = {} if allowed is None else {field: allowed}
    return parse_policy({"version": 1, "name": "app", "platforms": {platform: section}, **extra})


@pytest.mark.parametrize("platform", sorted(MEASUREMENT_PINS))
def test_the_measurement_pin_of_every_platform(platform: str) -> None:
    field, what = MEASUREMENT_PINS[platform]
    m, n = (M[:64], N[:64]) if platform == "sgx" else (M, N)  # MRENCLAVE is 32 bytes
    if platform == "keystone":  # SHA3-512 enclave hashes
        m, n = M + M[:32], N + N[:32]
    claims = {"platform": platform, "measurement": m.upper(), "profile": "production"}
    ok = appraise_admitted(claims, _policy(platform, field, [m, n]))
    assert ok.accepted and ok.policy_name == "app", ok.reasons
    refused = appraise_admitted(claims, _policy(platform, field, [n]))
    assert not refused.accepted and [r.code for r in refused.reasons] == [f"{what}_not_allowed"]
    assert appraise_admitted(claims, _policy(platform, field, None)).accepted  # no pin: any


def test_platform_and_profile_still_admitted() -> None:
    claims = {"platform": "tdx", "measurement": M, "profile": "development"}
    other = appraise_admitted(claims, _policy("sev-snp", "measurements", [M]))
    assert [r.code for r in other.reasons] == ["platform_not_allowed"]
    staged = appraise_admitted(
        claims, _policy("tdx", "mrtd", [M], profiles=["staging", "production"])
    )
    assert [r.code for r in staged.reasons] == ["profile_not_allowed"]
    assert appraise_admitted({**claims, "profile": "staging"},
                             _policy("tdx", "mrtd", [M], profiles=["staging"])).accepted  # fmt: skip
