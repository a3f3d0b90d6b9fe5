"""How a hardware driver settles the profile it runs in: measured, never claimed.

The driver reads its own report and applies the verifier's rule,
:func:`veritee.binding.attested_profile` (SEV-SNP HOSTDATA, TDX MRCONFIGID, the CCA Realm
Personalization Value set to :func:`veritee.binding.profile_launch_data`; a debug launch, or no
such launch data, is development). A profile the caller asks for is only a check: it must be the
one the hardware establishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from veritee.binding import attested_profile
from veritee.errors import UsageError
from veritee.profiles import Profile

__all__ = ["settle_profile"]


def settle_profile(requested: Profile | None, claims: Mapping[str, Any]) -> Profile:
    """The attested profile of a driver whose own report gives ``claims``.

    Raises :class:`UsageError` (``profile_mismatch``) when ``requested`` differs from it.
    """
    profile = attested_profile(claims)
    if requested is not None and requested != profile:
        raise UsageError(
            f"the hardware runs this workload in profile {profile.value} (its launch data and "
            f"debug state say so); {requested.value} was asked for",
            code="profile_mismatch",
        )
    return profile
